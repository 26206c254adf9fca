// Shared by the convolution property tests: paddings up to twice the effective kernel on each side
// (asymmetric, so some windows see only padding), and the input grown so that at least one window fits.

export type Padding = [number, number, number, number];

export function paddedCase<
  C extends { kh: number; kw: number; h: number; w: number; dilation: [number, number] },
>(c: C, padFrac: readonly [number, number, number, number]): C & { pad: Padding } {
  const ekh = (c.kh - 1) * c.dilation[0] + 1;
  const ekw = (c.kw - 1) * c.dilation[1] + 1;
  const pad: Padding = [
    padFrac[0] % (2 * ekh),
    padFrac[1] % (2 * ekh),
    padFrac[2] % (2 * ekw),
    padFrac[3] % (2 * ekw),
  ];
  return { ...c, pad, h: Math.max(c.h, ekh - pad[0] - pad[1]), w: Math.max(c.w, ekw - pad[2] - pad[3]) };
}
