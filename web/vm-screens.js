/*
 * The two screens of a VM page: its serial console in xterm.js and its display in
 * noVNC. Both are WebSockets to the daemon, which takes the session token as
 * ?access_token= there (a browser cannot set headers on a WebSocket). The libraries are
 * served by the daemon under /vendor/ and loaded on first use, so the rest of the
 * console works without them and a missing one is an error in the banner.
 *
 * Serial: the first frame is the guest's recent output (it replaces what the terminal
 * shows), then its output as it comes; what is typed goes to the guest byte for byte.
 * The terminal connects when the console tab is first shown and stays connected while
 * the page is open; it reconnects when the VM is started again (each start is a new
 * QEMU with a new serial hub). VNC: raw RFB bytes, connected only while its tab is
 * shown. When a socket closes, the VM is asked for again: a VM that stopped is said so
 * calmly, anything else is an error with a Reconnect button.
 *
 * Each panel has update(vm) (the page's latest view of the VM), shown(), hidden() and
 * dispose(); its status line carries data-state (idle, loading, connecting, connected,
 * stopped, closed, failed) for readers and tests.
 */
/* global WebSocket, TextEncoder, URL */
import { session, url } from './api.js';
import { h, showError } from './ui.js';

/** ws(s)://host/PATH?access_token=TOKEN for a daemon path. */
function socketUrl(path) {
  const target = new URL(path, location.href);
  target.protocol = target.protocol === 'https:' ? 'wss:' : 'ws:';
  target.searchParams.set('access_token', session.token ?? '');
  return target.href;
}

/**
 * Why a socket closed, as an error to show: the daemon closes a refused console with
 * 1011 and "CODE: message"; any other close has no code of the daemon's.
 */
function closeError(event, what) {
  const match = /^(STRATA_E_[A-Z_]+): (.*)$/s.exec(event.reason ?? '');
  if (match) return { code: match[1], message: match[2] };
  const detail = `code ${event.code}${event.reason ? `, ${event.reason}` : ''}`;
  return { code: 'STRATA_E_DAEMON_UNREACHABLE', message: `the ${what} connection closed (${detail}): the daemon refused it (consoles need an admin token) or went away` };
}

const live = (vm) => vm !== null && vm.state !== 'stopped';

function statusLine(test) {
  const text = h('span', { class: 'screen-status', 'data-test': test, 'data-state': 'idle', 'aria-live': 'polite' }, 'Not connected.');
  return {
    element: text,
    set(state, message) {
      text.dataset.state = state;
      text.textContent = message;
    },
    get state() {
      return text.dataset.state;
    },
  };
}

/**
 * The serial console. `recheck()` resolves to the VM as the daemon has it now (or null
 * if that failed); it is asked when the socket closes.
 */
export function serialPanel(name, recheck) {
  const status = statusLine('serial-status');
  const reconnect = h('button', { type: 'button', 'data-test': 'serial-reconnect', hidden: true }, 'Reconnect');
  const host = h('div', { class: 'terminal', 'data-test': 'serial-terminal' });
  const element = h(
    'div',
    { class: 'screen' },
    h('div', { class: 'screen-bar' }, status.element, reconnect),
    host,
    h('p', { class: 'hint' }, 'The guest’s first serial port (ttyS0). What you type goes to the guest; the daemon keeps its recent output, which is shown first.'),
  );
  const encoder = new TextEncoder();
  let vm = null;
  let term = null;
  let fit = null;
  let loading = null;
  let observer = null;
  let socket = null;
  /** startedMs of the run the socket is attached to, undefined for none (a new run needs a new socket). */
  let attachedTo;
  /** {startedMs} of a run whose socket failed: not retried on its own (Reconnect does). */
  let failed = null;
  let disposed = false;

  const setStatus = (state, message) => {
    status.set(state, message);
    reconnect.hidden = state !== 'closed';
  };

  const fitNow = () => {
    // A hidden terminal has no size to fit to.
    if (fit && host.offsetParent !== null) fit.fit();
  };

  function load() {
    loading ??= (async () => {
      setStatus('loading', 'Loading the terminal…');
      try {
        const [{ Terminal }, { FitAddon }] = await Promise.all([import('/vendor/xterm/lib/xterm.mjs'), import('/vendor/xterm-addon-fit/lib/addon-fit.mjs')]);
        if (disposed) return;
        term = new Terminal({ cursorBlink: true, scrollback: 10000, fontSize: 13, fontFamily: "ui-monospace, 'SFMono-Regular', Menlo, monospace" });
        fit = new FitAddon();
        term.loadAddon(fit);
        term.open(host);
        term.onData((data) => {
          if (socket?.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
        });
        observer = new ResizeObserver(fitNow);
        observer.observe(host);
        fitNow();
        setStatus('idle', 'Not connected.');
      } catch (error) {
        setStatus('failed', 'The terminal could not be loaded.');
        showError(error, 'Loading the terminal (xterm.js)');
      }
    })();
    return loading;
  }

  function close() {
    const old = socket;
    socket = null;
    attachedTo = undefined;
    old?.close();
  }

  function connect() {
    close();
    const ws = new WebSocket(socketUrl(url`/api/v1/vms/${name}/console`));
    ws.binaryType = 'arraybuffer';
    socket = ws;
    attachedTo = vm.startedMs;
    let first = true;
    setStatus('connecting', `Connecting to the serial console of ${name}…`);
    ws.addEventListener('open', () => {
      if (socket === ws) setStatus('connected', `Connected to the serial console of ${name}: keystrokes go to the guest.`);
    });
    ws.addEventListener('message', (event) => {
      if (socket !== ws) return;
      // The first frame is the recent output: it replaces what an earlier connection showed.
      if (first) term.reset();
      first = false;
      term.write(typeof event.data === 'string' ? event.data : new Uint8Array(event.data));
    });
    ws.addEventListener('close', async (event) => {
      if (socket !== ws) return;
      socket = null;
      attachedTo = undefined;
      // Set first: the refresh the recheck starts must not connect again.
      failed = { startedMs: vm.startedMs };
      const now = await recheck();
      if (disposed || socket !== null) return;
      if (now && !live(now)) {
        update(now);
        return;
      }
      const error = closeError(event, 'serial console');
      setStatus('closed', `Not connected: ${error.message}`);
      showError(error, `The serial console of ${name}`);
    });
  }

  function sync() {
    if (!term || !vm || disposed) return;
    if (live(vm)) {
      if (failed && failed.startedMs === vm.startedMs) return;
      if (!socket || attachedTo === undefined || attachedTo !== vm.startedMs) connect();
      return;
    }
    failed = null;
    close();
    setStatus('stopped', `VM ${name} is stopped: start it to see its serial console. The output of its last run, if any, stays below.`);
  }

  function update(next) {
    vm = next;
    sync();
  }

  reconnect.addEventListener('click', async () => {
    const now = await recheck();
    if (now) vm = now;
    failed = null;
    sync();
  });

  return {
    element,
    update,
    async shown() {
      await load();
      fitNow();
      sync();
      term?.focus();
    },
    hidden() {},
    dispose() {
      disposed = true;
      close();
      observer?.disconnect();
      term?.dispose();
    },
  };
}

/** The VNC display (noVNC); connected only while shown. */
export function vncPanel(name, recheck) {
  const status = statusLine('vnc-status');
  const reconnect = h('button', { type: 'button', 'data-test': 'vnc-reconnect', hidden: true }, 'Reconnect');
  const ctrlAltDel = h('button', { type: 'button', 'data-test': 'vnc-ctrl-alt-del', disabled: true }, 'Send Ctrl-Alt-Del');
  const screen = h('div', { class: 'vnc-screen', 'data-test': 'vnc-screen' });
  const element = h(
    'div',
    { class: 'screen' },
    h('div', { class: 'screen-bar' }, status.element, h('span', { class: 'buttons' }, ctrlAltDel, reconnect)),
    screen,
    h('p', { class: 'hint' }, 'The VM’s display (QEMU’s VNC server, through the daemon). Click it to send it your keyboard and mouse.'),
  );
  let vm = null;
  let visible = false;
  let disposed = false;
  let rfb = null;
  let attachedTo;
  /** {startedMs} of a run whose connection failed: not retried on its own (Reconnect does). */
  let failed = null;
  let rfbModule = null;

  const setStatus = (state, message) => {
    status.set(state, message);
    reconnect.hidden = state !== 'closed';
    ctrlAltDel.disabled = state !== 'connected';
  };

  function disconnect() {
    const old = rfb;
    rfb = null;
    attachedTo = undefined;
    if (old) old.disconnect();
    screen.replaceChildren();
  }

  async function ended(client, error) {
    if (rfb !== client) return;
    rfb = null;
    attachedTo = undefined;
    // Set first: the refresh the recheck starts must not connect again.
    failed = { startedMs: vm.startedMs };
    const now = await recheck();
    if (disposed || rfb !== null) return;
    if (now && !live(now)) {
      update(now);
      return;
    }
    if (!error) {
      setStatus('closed', `The display of ${name} disconnected.`);
      return;
    }
    setStatus('closed', `The display of ${name} disconnected: ${error.message}`);
    showError(error, `The VNC display of ${name}`);
  }

  async function connect() {
    disconnect();
    const startedMs = vm.startedMs;
    attachedTo = startedMs;
    setStatus('connecting', `Connecting to the display of ${name}…`);
    try {
      rfbModule ??= await import('/vendor/novnc/core/rfb.js');
    } catch (error) {
      attachedTo = undefined;
      setStatus('failed', 'noVNC could not be loaded.');
      showError(error, 'Loading the VNC client (noVNC)');
      return;
    }
    if (disposed || !visible || attachedTo !== startedMs) return;
    const RFB = rfbModule.default;
    const client = new RFB(screen, socketUrl(url`/api/v1/vms/${name}/vnc`), { shared: true });
    rfb = client;
    client.scaleViewport = true;
    client.background = '#111';
    client.addEventListener('connect', () => {
      if (rfb === client) setStatus('connected', `Connected to the display of ${name}.`);
    });
    client.addEventListener('desktopname', (event) => {
      if (rfb === client && status.state === 'connected') setStatus('connected', `Connected to the display of ${name} (${event.detail.name}).`);
    });
    client.addEventListener('disconnect', (event) => {
      void ended(client, event.detail.clean ? null : { code: 'STRATA_E_DAEMON_UNREACHABLE', message: 'the VNC connection failed before the display answered: the daemon refused it (consoles need an admin token) or went away' });
    });
    client.addEventListener('securityfailure', (event) => {
      void ended(client, { code: 'STRATA_E_HYPERVISOR', message: `QEMU's VNC server refused the connection${event.detail.reason ? `: ${event.detail.reason}` : ''}` });
    });
    client.addEventListener('credentialsrequired', () => {
      void ended(client, { code: 'STRATA_E_HYPERVISOR', message: "QEMU's VNC server asks for a password, which the console does not have" });
      client.disconnect();
    });
  }

  function sync() {
    if (!vm || disposed) return;
    if (!live(vm)) {
      failed = null;
      disconnect();
      setStatus('stopped', `VM ${name} is stopped: start it to see its display.`);
      return;
    }
    if (failed && failed.startedMs === vm.startedMs) return;
    if (visible && (attachedTo === undefined || attachedTo !== vm.startedMs)) void connect();
  }

  function update(next) {
    vm = next;
    sync();
  }

  ctrlAltDel.addEventListener('click', () => rfb?.sendCtrlAltDel());
  reconnect.addEventListener('click', async () => {
    const now = await recheck();
    if (now) vm = now;
    failed = null;
    disconnect();
    sync();
  });

  return {
    element,
    update,
    shown() {
      visible = true;
      sync();
    },
    hidden() {
      visible = false;
      failed = null;
      disconnect();
      if (vm && live(vm)) setStatus('idle', 'Not connected.');
    },
    dispose() {
      disposed = true;
      disconnect();
    },
  };
}
