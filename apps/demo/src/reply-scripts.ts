/**
 * What the demo agent says. There is no model: a prompt picks one of three scripted answers — the
 * weather (a `getWeather` tool call), how Mooring works (a `searchDocs` tool call), or a story — each
 * long enough (≈15 s at the default pace) to reload, go offline or open another tab in the middle.
 */
import type { JSONValue } from 'ai';

export type ReplySegment =
  | { text: string /** Only after an approval that was granted (true) or denied (false). */; when?: boolean }
  | {
      tool: {
        name: string;
        input: JSONValue;
        output: JSONValue;
        /** The tool asks first: a `tool-approval-request`, then the run waits for the user's answer. */
        needsApproval?: boolean;
      };
    };

export interface ReplyScript {
  /** The short "thinking" line streamed as reasoning. */
  reasoning: string;
  /** Text parts and tool calls, in order. */
  segments: ReplySegment[];
}

export function scriptFor(prompt: string): ReplyScript {
  const text = prompt.toLowerCase();
  if (/\bbook|reserve|reservation|table for/.test(text)) return booking();
  if (/weather|rain|sunny|forecast|temperature/.test(text)) return weather(cityIn(prompt));
  if (/mooring|resume|reload|offline|network|reconnect|how|why/.test(text)) return howItWorks(prompt);
  return story();
}

function cityIn(prompt: string): string {
  const match = /\bin ([A-Z][\p{L}-]+(?: [A-Z][\p{L}-]+)?)/u.exec(prompt);
  return match?.[1] ?? 'Lisbon';
}

function weather(city: string): ReplyScript {
  return {
    reasoning: `The user wants the weather in ${city}. I'll call getWeather, then turn the numbers into a plan for the day.`,
    segments: [
      { text: `Let me check the current conditions in ${city}.` },
      {
        tool: {
          name: 'getWeather',
          input: { city, units: 'metric' },
          output: { city, temperatureC: 21, sky: 'mostly clear', windKmh: 12, humidity: 0.55, uvIndex: 6 },
        },
      },
      {
        text: `It is 21 °C in ${city} right now, mostly clear, with a light north-westerly breeze of about 12 km/h and moderate humidity. In short: a very good day to be outside, as long as you respect the sun — the UV index is 6, so bring a hat and some sunscreen.

Here is how I would spend it. In the morning, while it is still cool, walk the old part of town before the crowds arrive. The light is softer, the streets are quieter, and the cafés are just putting their chairs out. Have a slow breakfast somewhere with a view; there is no hurry.

Around midday the sun is at its strongest, so this is the moment for something indoors: a museum, a covered market, or a long lunch in the shade. If you want to keep moving, pick a park with big trees rather than an open square.

In the afternoon the breeze picks up a little, which makes it ideal for the waterfront. Rent a bike, or simply follow the river until you find a good bench. Late in the day the light turns golden and the temperature drops to something close to perfect, so save the best viewpoint for the hour before sunset.

For the evening, a light jacket is enough. Dinner outside is a real option tonight: no rain is expected, and the wind should calm down after dark. Enjoy it!`,
      },
    ],
  };
}

function howItWorks(prompt: string): ReplyScript {
  const query = prompt.length > 60 ? `${prompt.slice(0, 57)}...` : prompt;
  return {
    reasoning:
      'The user asks how this session survives network trouble. I will search the docs, then explain it while the answer is still streaming, so they can try it.',
    segments: [
      { text: 'Good question — and the best way to answer it is to let you try it while I write.' },
      {
        tool: {
          name: 'searchDocs',
          input: { query },
          output: {
            results: [
              { title: 'Attach modes and resume', path: 'PROTOCOL.md#62-attach-modes' },
              { title: 'AI sessions: runs, parts and controls', path: 'PROTOCOL.md#13-ai-sessions' },
              { title: 'How does resume work?', path: 'README.md#faq' },
            ],
          },
        },
      },
      {
        text: `Everything I write goes into a session first, not straight to your browser. The session is an ordered log stored on the server: each token I produce is appended to one message, and every change gets a serial number. Your browser holds a connection to that log and remembers the serial of the last thing it applied.

Now, while this paragraph is still arriving, reload the page. You will come back to this exact answer, with everything written so far, and the rest will keep flowing. Nothing was generated twice: I never noticed you left. Your browser simply caught up from the log, rolled up into a few messages instead of hundreds of tokens, and then went live again.

Next, open the developer tools, switch the network to offline for a few seconds, and switch it back. The connection badge at the top will say it is reconnecting. When the network returns, the client attaches again from its last position, receives exactly what it missed, and continues. The delivery panel shows whether the resume succeeded and how many messages it caught up.

You can also open this page in a second tab, or copy the link to another device. Both views fold the same log, so they show the same conversation, live, token by token.

Finally, press Stop. The cancel travels through the session to me, I stop writing at once, and every open view marks this answer as cancelled.`,
      },
    ],
  };
}

/** A tool that asks first: `bookTable` waits for the user's approval. */
function booking(): ReplyScript {
  return {
    reasoning: 'The user wants a table. Booking spends their money, so I will ask before I call bookTable.',
    segments: [
      {
        text: 'I can book a table for two at the Harbour Lights restaurant at 20:00. I need your approval first.',
      },
      {
        tool: {
          name: 'bookTable',
          input: { restaurant: 'Harbour Lights', people: 2, time: '20:00' },
          output: { confirmation: 'HL-2046', restaurant: 'Harbour Lights', time: '20:00' },
          needsApproval: true,
        },
      },
      {
        when: true,
        text: 'Done: your table at Harbour Lights is booked for 20:00, confirmation HL-2046. Every device on this session saw the approval go through.',
      },
      {
        when: false,
        text: 'Understood, I did not book anything. Ask again whenever you want a table.',
      },
    ],
  };
}

function story(): ReplyScript {
  return {
    reasoning:
      'No tool needed. I will tell a longer story, which leaves time to reload, go offline or open a second tab mid-answer.',
    segments: [
      {
        text: `Here is a short story about harbours, long enough for you to try things while it streams.

In a small port on a windy coast, there was a harbour master who never lost a boat. Storms came in from the west every winter, and every winter the other harbours counted their losses. Hers counted nothing, and people wanted to know why.

It was not the sea wall. Hers was no taller than anyone else's. It was not the boats either; they were the same fishing boats you would find in any harbour along that coast. The secret was in the moorings. Every boat had its own place, marked on a chart that she kept in a drawer, and every line was tied in the same way, with a knot that held under strain but could be undone in a second.

When a storm broke a line, the boat drifted, but never far. The chart said exactly where it belonged, so whoever found it knew where to bring it back. Nothing was ever tied up twice, and nothing was ever left floating in the dark.

Years later, a young sailor asked her what she was really doing, all those nights out on the quay with her lantern and her chart. She thought for a while and said: I never tried to stop the storms. I only made sure that after every storm, each boat could find its way back to exactly where it had been.

The sailor laughed, because it sounded too simple. Then the next storm came, and he watched every boat return to its place by morning, one after another, as if nothing had happened. He never laughed about moorings again.`,
      },
    ],
  };
}
