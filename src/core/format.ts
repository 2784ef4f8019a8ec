// Sizes as people read them in logs and summaries.

export function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}
