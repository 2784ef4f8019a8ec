// Jump host chains as `ssh -J` takes them and as `ssh -G` prints them.
import { formatHop, parseJumpHosts } from '../../src/core/jumphosts.js';

describe('parseJumpHosts', () => {
  test.each([
    ['bastion.example.edu', [{ user: 'me', host: 'bastion.example.edu', port: 22 }]],
    ['gate@bastion:2200', [{ user: 'gate', host: 'bastion', port: 2200 }]],
    ['rivuser@[127.0.0.1]:2223', [{ user: 'rivuser', host: '127.0.0.1', port: 2223 }]],
    ['u@[2001:db8::1]:22', [{ user: 'u', host: '2001:db8::1', port: 22 }]],
    [
      'a@outer:2201, inner',
      [
        { user: 'a', host: 'outer', port: 2201 },
        { user: 'me', host: 'inner', port: 22 },
      ],
    ],
  ])('%s', (spec, hops) => {
    expect(parseJumpHosts(spec, 'me')).toEqual(hops);
  });

  test.each(['', '  ', 'none'])('%j is no chain', (spec) => {
    expect(parseJumpHosts(spec, 'me')).toEqual([]);
  });

  test.each(['host:0', 'host:65536', 'host:22:33', '@host', 'bad user@host', 'ho st', 'a,,b', '[::1', 'host;rm'])(
    '%j is refused, quoted in the message',
    (spec) => {
      expect(() => parseJumpHosts(spec, 'me')).toThrow(/'.*'/);
    },
  );

  test('formatHop writes what parseJumpHosts reads, IPv6 in brackets', () => {
    for (const spec of ['gate@bastion:2200', 'u@[2001:db8::1]:22']) {
      const [hop] = parseJumpHosts(spec, 'me');
      expect(formatHop(hop)).toBe(spec);
      expect(parseJumpHosts(formatHop(hop), 'x')).toEqual([hop]);
    }
  });
});
