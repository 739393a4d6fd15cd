/**
 * @mooring/react/chat — `useMooringChat`: `useChat` from `@ai-sdk/react` over a Mooring session.
 */

export type { UseMooringChatOptions, UseMooringChatResult } from './use-mooring-chat.ts';
export { useMooringChat } from './use-mooring-chat.ts';
