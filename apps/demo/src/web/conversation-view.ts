/**
 * Renders the session's view — user inputs and assistant runs — into a container, keyed by node id,
 * updating in place: a streamed answer grows its text nodes instead of being rebuilt, so selection
 * and scrolling stay put.
 *
 *   <article class="msg user" data-id>
 *   <article class="msg assistant" data-run-id data-status>
 *     header: agent · status pill · ‹ 1/2 › (alternatives from regenerate)
 *     parts:  .reasoning (muted) · .text · .tool (card: name, input, output)
 */
import type { ViewNode, ViewRun } from '@mooring/ai';
import type { UIMessage } from 'ai';

export interface ConversationActions {
  /** Show another alternative (a sibling) of a node. */
  select(nodeId: string): void;
}

const STATUS_LABELS: Record<ViewRun['status'], string> = {
  running: 'streaming',
  complete: 'complete',
  cancelled: 'cancelled',
  error: 'error',
  abandoned: 'abandoned',
};

type Part = UIMessage['parts'][number];

export function renderConversation(
  container: HTMLElement,
  view: ViewNode[],
  actions: ConversationActions,
): void {
  const existing = new Map<string, HTMLElement>();
  for (const child of container.children)
    existing.set((child as HTMLElement).dataset.id ?? '', child as HTMLElement);
  let previous: Element | null = null;
  for (const node of view) {
    let article = existing.get(node.id);
    existing.delete(node.id);
    if (!article) article = node.kind === 'input' ? createInput(node.id) : createRun(node.id);
    if (node.kind === 'input') updateInput(article, node.message, node.siblings, node.id, actions);
    else updateRun(article, node, actions);
    const expected: Element | null = previous ? previous.nextElementSibling : container.firstElementChild;
    if (expected !== article) container.insertBefore(article, expected);
    previous = article;
  }
  for (const stale of existing.values()) stale.remove();
}

function createInput(id: string): HTMLElement {
  const article = el('article', 'msg user');
  article.dataset.id = id;
  article.append(el('div', 'bubble'), el('nav', 'branches'));
  return article;
}

function updateInput(
  article: HTMLElement,
  message: UIMessage,
  siblings: string[],
  id: string,
  actions: ConversationActions,
): void {
  const text = message.parts
    .map((p) => (p.type === 'text' ? p.text : ''))
    .join('\n')
    .trim();
  setText(article.querySelector('.bubble')!, text);
  updateBranches(article.querySelector('.branches')!, siblings, id, actions);
}

function createRun(id: string): HTMLElement {
  const article = el('article', 'msg assistant');
  article.dataset.id = id;
  article.dataset.runId = id;
  const header = el('header', 'run-header');
  header.append(el('span', 'agent'), el('span', 'status'), el('nav', 'branches'));
  article.append(header, el('div', 'parts'));
  return article;
}

function updateRun(article: HTMLElement, run: ViewRun, actions: ConversationActions): void {
  article.dataset.status = run.status;
  setText(article.querySelector('.agent')!, run.agent);
  const status = article.querySelector<HTMLElement>('.status')!;
  setText(status, STATUS_LABELS[run.status]);
  status.dataset.status = run.status;
  status.title = run.reason ?? '';
  updateBranches(article.querySelector('.branches')!, run.siblings, run.id, actions);

  const container = article.querySelector('.parts')!;
  const shown = run.message.parts.filter(isShown);
  for (const [i, part] of shown.entries()) {
    let node = container.children[i] as HTMLElement | undefined;
    const kind = kindOf(part);
    if (node?.dataset.part !== kind) {
      const fresh = createPart(kind);
      if (node) node.replaceWith(fresh);
      else container.append(fresh);
      node = fresh;
    }
    updatePart(node, part);
  }
  while (container.children.length > shown.length) container.lastElementChild?.remove();
  const last = container.lastElementChild as HTMLElement | null;
  for (const caret of container.querySelectorAll('.caret')) caret.classList.remove('caret');
  if (run.status === 'running' && last?.dataset.part === 'text') last.classList.add('caret');
  if (shown.length === 0 && run.status === 'running') article.classList.add('waiting');
  else article.classList.remove('waiting');
}

function isShown(part: Part): boolean {
  return part.type === 'text' || part.type === 'reasoning' || isTool(part);
}

function isTool(part: Part): boolean {
  return part.type === 'dynamic-tool' || part.type.startsWith('tool-');
}

function kindOf(part: Part): 'text' | 'reasoning' | 'tool' {
  if (part.type === 'text') return 'text';
  if (part.type === 'reasoning') return 'reasoning';
  return 'tool';
}

function createPart(kind: 'text' | 'reasoning' | 'tool'): HTMLElement {
  const node = el('div', kind === 'tool' ? 'tool' : kind);
  node.dataset.part = kind;
  if (kind === 'tool') {
    const head = el('div', 'tool-head');
    head.append(el('span', 'tool-name'), el('span', 'tool-state'));
    node.append(head, el('pre', 'tool-input'), el('pre', 'tool-output'));
  }
  return node;
}

function updatePart(node: HTMLElement, part: Part): void {
  if (part.type === 'text' || part.type === 'reasoning') {
    growText(node, part.text);
    return;
  }
  const tool = part as {
    type: string;
    toolName?: string;
    state: string;
    input?: unknown;
    output?: unknown;
    errorText?: string;
  };
  const name = tool.type === 'dynamic-tool' ? (tool.toolName ?? 'tool') : tool.type.slice('tool-'.length);
  setText(node.querySelector('.tool-name')!, name);
  const done = tool.state === 'output-available';
  setText(
    node.querySelector('.tool-state')!,
    done ? 'done' : tool.state === 'output-error' ? 'failed' : 'running…',
  );
  node.dataset.state = tool.state;
  setText(node.querySelector('.tool-input')!, tool.input === undefined ? '' : `→ ${compact(tool.input)}`);
  const output = tool.errorText ?? (tool.output === undefined ? '' : `← ${compact(tool.output)}`);
  setText(node.querySelector('.tool-output')!, output);
}

function updateBranches(
  nav: HTMLElement,
  siblings: string[],
  id: string,
  actions: ConversationActions,
): void {
  const index = siblings.indexOf(id);
  if (siblings.length < 2 || index < 0) {
    nav.replaceChildren();
    return;
  }
  const key = `${siblings.join(',')}|${id}`;
  if (nav.dataset.key === key) return;
  nav.dataset.key = key;
  const prev = button('‹', 'previous alternative', index > 0, () => actions.select(siblings[index - 1]!));
  const next = button('›', 'next alternative', index < siblings.length - 1, () =>
    actions.select(siblings[index + 1]!),
  );
  const label = el('span', 'branch-label');
  label.textContent = `${index + 1}/${siblings.length}`;
  nav.replaceChildren(prev, label, next);
}

function button(text: string, title: string, enabled: boolean, onClick: () => void): HTMLButtonElement {
  const b = el('button', 'branch');
  b.type = 'button';
  b.textContent = text;
  b.title = title;
  b.disabled = !enabled;
  b.addEventListener('click', onClick);
  return b;
}

function compact(value: unknown): string {
  const text = JSON.stringify(value);
  return text.length > 240 ? `${text.slice(0, 237)}...` : text;
}

/** Appends what is new when the text only grew (a streamed part), else replaces it. */
function growText(node: Element, text: string): void {
  const current = node.textContent ?? '';
  if (current === text) return;
  if (current !== '' && text.startsWith(current)) node.append(text.slice(current.length));
  else node.textContent = text;
}

function setText(node: Element, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  return node;
}
