// No request leaves the page: fetch and XMLHttpRequest are limited to this page's own origin, before any library
// loads. MediaPipe Tasks Vision posts usage logs to a Google host from its task runner (a plain fetch); this
// refuses it through the public fetch API, without touching the library's internals. The page's
// Content-Security-Policy (connect-src 'self') is the second lock: the browser itself refuses what slips by.
// Refused URLs are kept in window.facefxBlocked (the tests read it).

const blocked = [];
globalThis.facefxBlocked = blocked;

function isLocal(url) {
  try {
    const u = new URL(url instanceof Request ? url.url : String(url), location.href);
    return u.origin === location.origin || u.protocol === 'blob:' || u.protocol === 'data:';
  } catch {
    return false;
  }
}

const realFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = function guardedFetch(input, init) {
  if (!isLocal(input)) {
    blocked.push(String(input instanceof Request ? input.url : input));
    return Promise.reject(new TypeError('facefx: requests to other hosts are blocked (privacy)'));
  }
  return realFetch(input, init);
};

const realOpen = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function guardedOpen(method, url, ...rest) {
  if (!isLocal(url)) {
    blocked.push(String(url));
    throw new TypeError('facefx: requests to other hosts are blocked (privacy)');
  }
  return realOpen.call(this, method, url, ...rest);
};

if (navigator.sendBeacon) {
  const realBeacon = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (url, data) => (isLocal(url) ? realBeacon(url, data) : (blocked.push(String(url)), false));
}
