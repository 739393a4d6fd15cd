/**
 * Builders of the operations a channel publishes (PROTOCOL.md §7), each with its idempotency id.
 */
import type { Headers, JsonValue, OperationInput } from '@mooring/protocol';

export interface OperationOptions {
  /** Idempotency key; generated when absent. */
  id?: string;
  headers?: Headers;
}

export interface UpdateFields {
  name?: string;
  data?: JsonValue;
  encoding?: 'base64';
  headers?: Headers;
}

export function createOp(
  id: string,
  name: string,
  data: JsonValue | undefined,
  headers?: Headers,
): OperationInput {
  const op: OperationInput = { action: 'create', id, name };
  if (data !== undefined) op.data = data;
  if (headers !== undefined) op.headers = headers;
  return op;
}

export function appendOp(id: string, serial: string, delta: string, headers?: Headers): OperationInput {
  const op: OperationInput = { action: 'append', id, serial, data: delta };
  if (headers !== undefined) op.headers = headers;
  return op;
}

export function updateOp(id: string, serial: string, fields: UpdateFields): OperationInput {
  return { action: 'update', id, serial, ...fields };
}

export function deleteOp(id: string, serial: string): OperationInput {
  return { action: 'delete', id, serial };
}
