/**
 * Renders hooks the way the tests use them: under StrictMode (its mount → unmount → mount is what a
 * hook must survive) inside a `<MooringProvider client>`. Import `./dom.ts` before this module.
 */
import type { Mooring } from '@mooring/client';
import { render } from '@testing-library/react';
import type { ReactNode } from 'react';
import { createElement, StrictMode } from 'react';
import { MooringProvider } from '../../src/index.ts';

export function strict(mooring: Mooring, child: ReactNode): ReactNode {
  return createElement(StrictMode, null, createElement(MooringProvider, { client: mooring }, child));
}

/** Renders `hook` in a component under StrictMode; `current()` is its latest result. */
export function mount<T>(
  t: { after(fn: () => void): void },
  mooring: Mooring,
  hook: () => T,
): { current: () => T; unmount(): void } {
  let latest: T | undefined;
  function Probe() {
    latest = hook();
    return null;
  }
  const view = render(strict(mooring, createElement(Probe)));
  t.after(() => view.unmount());
  return {
    current: () => {
      if (latest === undefined) throw new Error('not rendered yet');
      return latest;
    },
    unmount: () => view.unmount(),
  };
}
