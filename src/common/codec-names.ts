/* Names of the compression codecs a pool policy may choose; the codecs live in src/chunks. */
export const codecNames = ['none', 'lz4', 'zstd'] as const;
export type Codec = (typeof codecNames)[number];

export function isCodec(value: unknown): value is Codec {
  return typeof value === 'string' && (codecNames as readonly string[]).includes(value);
}
