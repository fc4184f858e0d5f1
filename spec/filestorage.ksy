meta:
  id: filestorage
  title: ZODB FileStorage data file (magic FS21 or FS30), as served and written by ZRS nodes
  file-extension: fs
  license: ZPL-2.1
  endian: be
doc: |
  A FileStorage file is the 4-byte magic followed by transaction records
  back to back until the end of the file. There is no other header and no
  footer. All integers are unsigned and big-endian; every offset is an
  absolute position in the file. spec/file-format.md is the normative text;
  this description is checked against real files by spec/test/kaitai.test.ts.

  This description parses valid, complete files only. A file with a damaged
  tail (a cut transaction, or a header shorter than 23 bytes) makes the parse
  fail. A whole transaction whose status is still `c` parses like any other;
  spec/file-format.md says how readers treat it. Besides the layout, the
  parse checks four validity rules: the magic, trailing length == tlen,
  tloc == offset of the transaction, and vlen == 0. The body of an obsolete
  `u` transaction is kept opaque instead of being parsed as data records.
doc-ref: spec/file-format.md
seq:
  - id: magic
    type: str
    size: 4
    encoding: ASCII
    valid:
      any-of:
        - '"FS21"'
        - '"FS30"'
    doc: |
      "FS30" (written by Python 3 ZODB) or "FS21" (written by Python 2
      ZODB). The layout that follows is the same for both.
  - id: transactions
    type: transaction(_io.pos)
    repeat: eos
    doc: Transaction records, the first at offset 4, each directly after the previous one.
types:
  transaction:
    doc: |
      One transaction record at file offset `tpos`. Its length on disk is
      `tlen + 8`: `tlen` counts everything except the trailing 8-byte copy
      of itself.
    params:
      - id: tpos
        type: u8
        doc: Absolute file offset of this record (of its tid field).
    seq:
      - id: tid
        size: 8
        doc: Transaction id, a TimeStamp; strictly greater than the tid of the previous record.
      - id: tlen
        type: u8
        doc: Length of the record without the trailing 8-byte length; the next record starts at tpos + tlen + 8.
      - id: status
        type: u1
        enum: status
        doc: One ASCII byte, see enum status.
      - id: ulen
        type: u2
        doc: Length of `user` in bytes (at most 65535).
      - id: dlen
        type: u2
        doc: Length of `description` in bytes (at most 65535).
      - id: elen
        type: u2
        doc: Length of `extension` in bytes (at most 65535).
      - id: user
        size: ulen
        doc: User name, opaque bytes (UTF-8 by convention).
      - id: description
        size: dlen
        doc: Description, opaque bytes (UTF-8 by convention).
      - id: extension
        size: elen
        doc: Extension metadata, a pickled dict, stored as opaque bytes; empty when there is none.
      - id: data_records
        type: data_records(tpos, tpos + 23 + ulen + dlen + elen)
        size: tlen - 23 - ulen - dlen - elen
        if: status != status::undone
        doc: |
          The data records, which fill the space from the end of the header
          (tpos + 23 + ulen + dlen + elen) up to tpos + tlen exactly.
      - id: undone_body
        size: tlen - 23 - ulen - dlen - elen
        if: status == status::undone
        doc: |
          The body of an obsolete 'u' transaction, kept opaque: readers do
          not use the data records of such a transaction.
      - id: trailing_length
        type: u8
        valid: tlen
        doc: Redundant copy of `tlen`, at offset tpos + tlen; lets a reader walk the file backwards.
    instances:
      header_length:
        value: 23 + ulen + dlen + elen
        doc: Length of the fixed header plus user, description and extension.
  data_records:
    doc: The data records of one transaction, back to back.
    params:
      - id: tpos
        type: u8
        doc: Offset of the enclosing transaction record.
      - id: base
        type: u8
        doc: Absolute file offset of the first data record.
    seq:
      - id: records
        type: data_record(tpos, base + _io.pos)
        repeat: eos
        doc: Zero or more data records.
  data_record:
    doc: |
      One object revision: a 42-byte header, then `plen` bytes of data, or,
      when `plen` is 0, an 8-byte backpointer instead of data.
    params:
      - id: tpos
        type: u8
        doc: Offset of the enclosing transaction record.
      - id: pos
        type: u8
        doc: Absolute file offset of this data record.
    seq:
      - id: oid
        size: 8
        doc: Object id.
      - id: tid
        size: 8
        doc: Serial of this revision; equal to the tid of the enclosing transaction.
      - id: prev
        type: u8
        doc: Offset of the previous data record of the same oid, or 0 when there is none; less than `pos`.
      - id: tloc
        type: u8
        valid: tpos
        doc: Offset of the enclosing transaction record.
      - id: vlen
        type: u2
        valid: 0
        doc: Always 0 (formerly the length of a version name).
      - id: plen
        type: u8
        doc: Length of the data; 0 means an 8-byte backpointer follows instead.
      - id: data
        size: plen
        if: plen != 0
        doc: The object data (pickles), present when plen > 0.
      - id: back
        type: u8
        if: plen == 0
        doc: |
          Present when plen == 0: offset of an earlier data record of the same
          oid whose data this revision has (possibly itself a backpointer),
          or 0 when the revision has no data (creation undone, or object deleted).
enums:
  status:
    0x20:
      id: committed
      doc: "' ': a committed transaction."
    0x70:
      id: packed
      doc: "'p': a committed transaction that pack rewrote."
    0x63:
      id: checkpoint
      doc: "'c': written by vote, not yet finished; only ever the last record of a file."
    0x75:
      id: undone
      doc: "'u': obsolete; readers skip such a transaction."
