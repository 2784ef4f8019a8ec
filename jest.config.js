// Two tiers: unit tests (pure logic, no network) and end-to-end tests that run the bundled
// action and CLI against the stand-in cluster (test-cluster/), one at a time.
// Transpile only (tsconfig sets isolatedModules); type checking is `npm run build`.
const tsJest = ['ts-jest', { useESM: true }];
const common = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': tsJest },
};
export default {
  // e2e tests run whole deliveries; unit tests are fast either way.
  testTimeout: 180_000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/__tests__/unit/**/*.test.ts'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/__tests__/e2e/**/*.test.ts'], slowTestThreshold: 120 },
  ],
};
