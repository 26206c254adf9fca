// Helpers shared by the data tests.

/** The rows × cols window at (top, left) of an HWC uint8 image of width w and c channels. */
export function crop(
  px: Uint8Array,
  w: number,
  c: number,
  top: number,
  left: number,
  rows: number,
  cols: number,
): Uint8Array {
  const out = new Uint8Array(rows * cols * c);
  for (let r = 0; r < rows; r++)
    out.set(px.subarray(((top + r) * w + left) * c, ((top + r) * w + left + cols) * c), r * cols * c);
  return out;
}
