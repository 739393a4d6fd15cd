import type { OperationInput } from '@mooring/protocol';

/**
 * The size of one operation as its limits count it (PROTOCOL.md §10): its name, data and headers,
 * the data and headers as JSON unless the data is a string.
 */
export function operationSize(input: OperationInput): number {
  let size = input.name === undefined ? 0 : Buffer.byteLength(input.name);
  if (typeof input.data === 'string') size += Buffer.byteLength(input.data);
  else if (input.data !== undefined) size += Buffer.byteLength(JSON.stringify(input.data));
  if (input.headers !== undefined) size += Buffer.byteLength(JSON.stringify(input.headers));
  return size;
}

/** The sizes of a publish's operations together. */
export function operationsSize(inputs: readonly OperationInput[]): number {
  let size = 0;
  for (const input of inputs) size += operationSize(input);
  return size;
}
