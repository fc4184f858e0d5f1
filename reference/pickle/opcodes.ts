/**
 * Pickle opcodes (bytes), named as in CPython's `pickletools`.
 * @module
 */
export const Op = {
  MARK: 0x28, // (
  STOP: 0x2e, // .
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  FLOAT: 0x46, // F  decimal text + \n
  INT: 0x49, // I  decimal text + \n; I00 / I01 are False / True
  BININT: 0x4a, // J  i32 little-endian
  BININT1: 0x4b, // K  u8
  LONG: 0x4c, // L  decimal text, optional trailing L, + \n
  BININT2: 0x4d, // M  u16 little-endian
  NONE: 0x4e, // N
  PERSID: 0x50, // P
  BINPERSID: 0x51, // Q
  REDUCE: 0x52, // R
  STRING: 0x53, // S  quoted Python 2 str + \n
  BINSTRING: 0x54, // T  i32 length + bytes (Python 2 str)
  SHORT_BINSTRING: 0x55, // U  u8 length + bytes (Python 2 str)
  UNICODE: 0x56, // V  raw-unicode-escape text + \n
  BINUNICODE: 0x58, // X  u32 length + UTF-8
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c  module \n name \n
  DICT: 0x64, // d
  EMPTY_DICT: 0x7d, // }
  APPENDS: 0x65, // e
  GET: 0x67, // g
  BINGET: 0x68, // h
  INST: 0x69, // i
  LONG_BINGET: 0x6a, // j
  LIST: 0x6c, // l
  EMPTY_LIST: 0x5d, // ]
  OBJ: 0x6f, // o
  PUT: 0x70, // p
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  EMPTY_TUPLE: 0x29, // )
  SETITEMS: 0x75, // u
  BINFLOAT: 0x47, // G  8-byte big-endian double
  PROTO: 0x80,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  BINBYTES: 0x42, // B  u32 length + bytes
  SHORT_BINBYTES: 0x43, // C  u8 length + bytes
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
} as const;

/** Printable name of an opcode byte, for error messages. */
export function opName(code: number): string {
  for (const [name, value] of Object.entries(Op)) if (value === code) return name;
  return `0x${code.toString(16).padStart(2, '0')}`;
}
