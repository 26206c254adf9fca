// A small RFC 4180 CSV reader for dataset manifests: quoted fields ("" is a quote inside quotes),
// quoted commas and newlines, CRLF or LF line ends, a leading byte-order mark. Each record keeps the
// line it starts on, so errors can name it.

/** One CSV record: its fields and the 1-based line of the file where it starts. */
export interface CsvRecord {
  fields: string[];
  line: number;
}

/** Thrown for text that is not CSV (an unterminated quote, text after a closing quote). */
export class CsvSyntaxError extends Error {
  readonly line: number;
  constructor(message: string, line: number) {
    super(message);
    this.name = 'CsvSyntaxError';
    this.line = line;
  }
}

/** Splits CSV text into records. Blank lines are skipped (they hold no record). */
export function parseCsv(text: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const startLine = line;
    const fields: string[] = [];
    let field = '';
    let endOfRecord = false;
    while (!endOfRecord) {
      if (text[i] === '"') {
        // Quoted field: runs to the next lone quote; may span lines.
        const quoteLine = line;
        i++;
        for (;;) {
          if (i >= n)
            throw new CsvSyntaxError(`a quoted field opened on line ${quoteLine} is never closed`, quoteLine);
          const ch = text[i] as string;
          if (ch === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (ch === '\n') line++;
          field += ch;
          i++;
        }
        const next = text[i];
        if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') {
          throw new CsvSyntaxError(`unexpected text after a closing quote on line ${line}`, line);
        }
      } else {
        while (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') {
          if (text[i] === '"') {
            throw new CsvSyntaxError(
              `a quote inside an unquoted field on line ${line}; quote the whole field and double inner quotes`,
              line,
            );
          }
          field += text[i];
          i++;
        }
      }
      fields.push(field);
      field = '';
      const sep = text[i];
      if (sep === ',') {
        i++;
      } else {
        // End of line or of the text.
        if (sep === '\r') i++;
        if (text[i] === '\n') i++;
        if (sep !== undefined) line++;
        endOfRecord = true;
      }
    }
    const blank = fields.length === 1 && (fields[0] as string).trim() === '';
    if (!blank) records.push({ fields, line: startLine });
  }
  return records;
}
