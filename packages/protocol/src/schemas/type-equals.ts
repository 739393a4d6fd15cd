/**
 * A compile-time check that a schema's output type and the hand-written wire type are the same, so the
 * zod-free types the client uses and the schemas the server validates with can never drift apart.
 */
export type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** Compiles only when given `true`: `export type _X = Same<Equals<A, B>>`. */
export type Same<T extends true> = T;
