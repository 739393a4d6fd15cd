/**
 * Where a client's WebSocket messages begin and end in the bytes read from its socket, followed
 * without keeping any of them (RFC 6455 §5.2). `ws` buffers a message until it is whole, so a
 * message begun and not finished holds memory (up to `maxFrameSize`) for as long as its sender
 * likes: the transport asks this whether one is open after each read, to hold the message to one of
 * its identity's reading slots (inbound-budget.ts).
 *
 * Only the frame headers are read: the opcode (a data frame, or a control frame that may come
 * between the fragments of a message), the FIN bit, and the payload length that says where the next
 * header is. Whatever `ws` refuses (a bad opcode, an unmasked frame, a length past `maxPayload`)
 * closes the socket; until then the count here is simply what the header says.
 */
export class MessageScanner {
  /** Index of the next header byte to read; 0 between frames and while in a payload. */
  #at = 0;
  /** Bytes in the current frame's header: 2 until its second byte says how many more follow. */
  #headerSize = 2;
  /** Header bytes after the second that hold the payload length: 0, 2 or 8. */
  #extended = 0;
  /** Payload length, as read from the header so far. */
  #length = 0;
  /** Payload bytes of the current frame still to come. */
  #payloadLeft = 0;
  /** The current frame ends its message (FIN). */
  #final = false;
  /** The current frame is a control frame (ping, pong, close): not part of a message. */
  #control = false;
  /** A data message has begun and its last frame has not ended. */
  #open = false;

  /** True while a message has begun and not ended: `ws` holds what has come of it. */
  get partial(): boolean {
    return this.#open;
  }

  /** Follows `chunk`, the next bytes read from the socket. */
  scan(chunk: Uint8Array): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.#payloadLeft > 0) {
        const step = Math.min(n - i, this.#payloadLeft);
        this.#payloadLeft -= step;
        i += step;
        if (this.#payloadLeft === 0) this.#frameEnded();
        continue;
      }
      const byte = chunk[i++]!;
      const at = this.#at++;
      if (at === 0) {
        this.#final = (byte & 0x80) !== 0;
        this.#control = (byte & 0x08) !== 0;
        if (!this.#control) this.#open = true;
      } else if (at === 1) {
        const length = byte & 0x7f;
        this.#extended = length === 126 ? 2 : length === 127 ? 8 : 0;
        this.#length = this.#extended === 0 ? length : 0;
        // then the extended length, then the masking key (every client frame has one)
        this.#headerSize = 2 + this.#extended + ((byte & 0x80) !== 0 ? 4 : 0);
      } else if (at < 2 + this.#extended) {
        this.#length = this.#length * 256 + byte; // most significant byte first
      }
      if (this.#at === this.#headerSize) {
        this.#at = 0;
        this.#headerSize = 2;
        this.#payloadLeft = this.#length;
        if (this.#payloadLeft === 0) this.#frameEnded();
      }
    }
  }

  #frameEnded(): void {
    if (this.#final && !this.#control) this.#open = false;
  }
}
