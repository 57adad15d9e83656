/*
 * Small DOM helpers shared by the views: `h` builds elements, `showError` puts any
 * failure in the page's alert banner (role="alert", never a silent or blank page),
 * `showNotice` confirms what succeeded, `ask` is a modal <dialog> for confirmations and
 * small forms, and `action` wraps a button's work so it is disabled while it runs and
 * its failure is shown.
 */

/** h('a', {href, 'data-test': 'x', onclick}, 'text', child, [more]) → an element. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') element.addEventListener(key.slice(2), value);
    else if (key === 'class') element.className = value;
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

function banner(id) {
  return document.getElementById(id);
}

let noticeTimer = null;

/** Shows an error (ApiError, Error or text) in the alert banner; `what` says what failed. */
export function showError(error, what) {
  // The sign-in page already says why the session ended.
  if (error?.sessionEnded) return;
  const element = banner('alert');
  const code = error?.code;
  const message = error?.message ?? String(error);
  element.replaceChildren(
    h('span', { class: 'alert-text' }, what ? h('strong', {}, `${what} failed: `) : null, message, code ? h('code', { 'data-test': 'alert-code' }, code) : null),
    h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: clearError }, '×'),
  );
  element.hidden = false;
  banner('notice').hidden = true;
}

export function clearError() {
  const element = banner('alert');
  element.hidden = true;
  element.replaceChildren();
}

/** A short success message that fades after a few seconds. */
export function showNotice(text) {
  const element = banner('notice');
  element.textContent = text;
  element.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (element.hidden = true), 6000);
}

/**
 * Runs `work` for a button or form: clears the old error, disables the control while it
 * runs, shows a failure with `what`. Resolves to work's result, or undefined on failure.
 */
export async function action(control, what, work) {
  clearError();
  if (control) control.disabled = true;
  try {
    return await work();
  } catch (error) {
    showError(error, what);
    return undefined;
  } finally {
    if (control) control.disabled = false;
  }
}

/**
 * A modal dialog: a message, optional fields and Cancel / confirm. A field is text
 * ({name, label, value}) or a checkbox ({name, label, type: 'checkbox', checked}).
 * Resolves to the field values (trimmed text, or true/false for a checkbox; {} without
 * fields), or null if cancelled.
 */
export function ask({ title, message, fields = [], confirm = 'OK', danger = false }) {
  return new Promise((resolve) => {
    const inputs = fields.map((field) =>
      field.type === 'checkbox'
        ? h('input', { type: 'checkbox', name: field.name, checked: Boolean(field.checked), 'data-test': `dialog-${field.name}` })
        : h('input', { name: field.name, value: field.value ?? '', required: true, autocomplete: 'off', 'data-test': `dialog-${field.name}` }),
    );
    const textInputs = inputs.filter((input) => input.type !== 'checkbox');
    const form = h(
      'form',
      { method: 'dialog' },
      h('h2', { id: 'dialog-title' }, title),
      message ? h('p', {}, message) : null,
      fields.map((field, index) => (field.type === 'checkbox' ? h('label', { class: 'check' }, inputs[index], field.label) : h('label', {}, field.label, inputs[index]))),
      h(
        'div',
        { class: 'buttons' },
        // Not a submit button: Enter in a field must confirm, not cancel.
        h('button', { type: 'button', 'data-test': 'dialog-cancel', onclick: () => dialog.close('cancel') }, 'Cancel'),
        h('button', { value: 'ok', class: danger ? 'danger' : 'primary', 'data-test': 'dialog-confirm' }, confirm),
      ),
    );
    const dialog = h('dialog', { 'aria-labelledby': 'dialog-title', 'data-test': 'dialog' }, form);
    dialog.addEventListener('close', () => {
      const values = Object.fromEntries(fields.map((field, index) => [field.name, field.type === 'checkbox' ? inputs[index].checked : inputs[index].value.trim()]));
      dialog.remove();
      resolve(dialog.returnValue === 'ok' ? values : null);
    });
    document.body.append(dialog);
    dialog.showModal();
    (textInputs[0] ?? form.querySelector('[value=ok]')).focus();
  });
}

/** A progress bar with its percent as text beside it. */
export function progressBar(percent, test) {
  const value = Math.max(0, Math.min(100, Math.round(percent)));
  return h('span', { class: 'progress' }, h('progress', { max: 100, value, 'data-test': test, 'aria-label': `${value} percent` }), h('span', {}, `${value} %`));
}

/** A figure with its raw number in data-value, for readers (and tests) that want it. */
export function figure(test, value, text) {
  return h('output', { 'data-test': test, 'data-value': value }, text);
}

/** A definition list of [term, description] pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([term, description]) => [h('dt', {}, term), h('dd', {}, description)]));
}

/** Coalesces calls of an async `refresh` so at most one runs and one waits. */
export function coalesced(refresh) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await refresh();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
  return run;
}
