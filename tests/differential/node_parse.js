'use strict';
// How Node's own http module reads a request, for tests/integration/test_differential.py.
// Core modules only. Listens on 127.0.0.1:0, prints {"port": N} on one line, answers every
// request with JSON, and exits when its standard input closes (the test session ends).
//
// Node joins repeated Cookie lines with "; " and other repeated headers with ", "
// (req.headers); req.rawHeaders keeps every line as sent.
const http = require('http');

// The cookie maps below mirror the `cookie` npm package, which express (req.cookies through
// cookie-parser) and express-session use: split on ';', skip a chunk without '=', trim the
// key and the value, strip surrounding quotes, the FIRST value of a name wins.
// `cookie` >= 0.7 trims only space and tab; older releases (0.4-0.6, still in many lock
// files) use String.prototype.trim, which also removes U+00A0, VT, FF (Node decodes header
// bytes as latin-1, so a 0xA0 byte becomes U+00A0). Percent-decoding (decodeURIComponent) is
// left out on purpose: it gives another spelling of the same value, never another cookie.
function trimSpaceTab(text) {
  let start = 0;
  let end = text.length;
  while (start < end && (text[start] === ' ' || text[start] === '\t')) start++;
  while (end > start && (text[end - 1] === ' ' || text[end - 1] === '\t')) end--;
  return text.slice(start, end);
}

function parseCookie(header, trim, legacyQuotes) {
  const out = Object.create(null);
  let index = 0;
  while (index < header.length) {
    const eq = header.indexOf('=', index);
    if (eq === -1) break;
    let end = header.indexOf(';', index);
    if (end === -1) {
      end = header.length;
    } else if (end < eq) {
      // a chunk without '=': go on from the ';' just before that '='
      index = header.lastIndexOf(';', eq - 1) + 1;
      continue;
    }
    const key = trim(header.slice(index, eq));
    if (!Object.prototype.hasOwnProperty.call(out, key)) {
      let value = trim(header.slice(eq + 1, end));
      if (legacyQuotes ? value.charCodeAt(0) === 0x22
        : value[0] === '"' && value[value.length - 1] === '"') {
        value = value.slice(1, -1);
      }
      out[key] = value;
    }
    index = end + 1;
  }
  return out;
}

const server = http.createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
  const cookie = req.headers.cookie;
  const remoteUser = req.headers['remote-user'];
  const body = JSON.stringify({
    cookie: cookie === undefined ? null : cookie,
    remote_user: remoteUser === undefined ? null : remoteUser,
    raw_headers: req.rawHeaders,
    cookies: cookie === undefined ? {} : parseCookie(cookie, trimSpaceTab, false),
    cookies_legacy: cookie === undefined ? {} : parseCookie(cookie, (s) => s.trim(), true),
  });
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  res.end(body);
});

if (require.main === module) {
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
module.exports = { parseCookie, trimSpaceTab };
