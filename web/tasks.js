/*
 * The tasks page: long operations (import, export, compaction, check, flatten), newest
 * first, with state, percent done, phase, and the error of a failed one. A running task
 * can be cancelled. The page polls once a second while any task runs (progress has no
 * event), and refreshes on events otherwise.
 */
import { api, url } from './api.js';
import { formatTime } from './format.js';
import { action, coalesced, h, progressBar, showError, showNotice } from './ui.js';

const pollMs = 1000;

function taskRow(task, refresh) {
  const cancel =
    task.state === 'running' ? h('button', { type: 'button', class: 'danger', 'data-test': 'task-cancel', 'aria-label': `Cancel task ${task.id}` }, 'Cancel') : null;
  cancel?.addEventListener('click', async () => {
    await action(cancel, `Cancelling task ${task.id}`, async () => {
      await api.post(url`/api/v1/tasks/${task.id}/cancel`);
      showNotice(`Task ${task.id} is being cancelled`);
    });
    await refresh();
  });
  return h(
    'tr',
    { 'data-test': 'task-row', 'data-task': task.id, 'data-kind': task.kind },
    h('td', {}, String(task.id)),
    h('td', {}, task.kind),
    h('td', {}, task.subject),
    h('td', {}, h('span', { class: `state ${task.state}`, 'data-test': 'task-state' }, task.state)),
    h('td', {}, progressBar(task.percent, 'task-progress'), task.phase ? h('span', { class: 'hint' }, ` ${task.phase}`) : null),
    h('td', {}, formatTime(task.createdMs)),
    h('td', {}, task.finishedMs ? formatTime(task.finishedMs) : '—'),
    h('td', { class: task.error ? 'bad' : '' }, task.error ? `${task.error.message} (${task.error.code})` : ''),
    h('td', {}, cancel),
  );
}

export function mount(root) {
  let disposed = false;
  let timer = null;
  const table = h('div', { 'data-test': 'tasks' }, h('p', { class: 'hint' }, 'Loading tasks…'));
  root.append(h('h1', {}, 'Tasks'), table);

  const refresh = coalesced(async () => {
    clearTimeout(timer);
    try {
      const tasks = await api.get('/api/v1/tasks');
      if (disposed) return;
      table.replaceChildren(
        tasks.length === 0
          ? h('p', { class: 'hint' }, 'No tasks since the daemon started.')
          : h(
              'table',
              { 'data-test': 'task-table' },
              h('thead', {}, h('tr', {}, ['ID', 'Kind', 'Subject', 'State', 'Progress', 'Started', 'Finished', 'Error', ''].map((title) => h('th', {}, title)))),
              h('tbody', {}, tasks.map((task) => taskRow(task, refresh))),
            ),
      );
      if (tasks.some((task) => task.state === 'running')) timer = setTimeout(() => void refresh(), pollMs);
    } catch (error) {
      showError(error, 'Loading tasks');
    }
  });
  void refresh();

  return {
    onEvent() {
      void refresh();
    },
    dispose() {
      disposed = true;
      clearTimeout(timer);
    },
  };
}
