// A Node function with what real ones do at init: crypto, fs and net
// loaded, a large heap, a ticker, randomness drawn (so that the caches of
// randomUUID and randomInt are filled in the template). Used by the
// multi-threaded boot tests and scripts/bench-threads.sh.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const cache = Buffer.alloc(32 << 20, 7);
let ticks = 0;
setInterval(() => ticks++, 2);
crypto.randomBytes(16); crypto.randomUUID(); crypto.randomInt(1000);
const self = fs.readFileSync(__filename, 'utf8').length;
function echo() {
  return new Promise((resolve) => {
    const srv = net.createServer(s => s.pipe(s));
    srv.on('error', e => resolve('error ' + e.code));
    srv.listen(0, '127.0.0.1', () => {
      let got = '';
      const c = net.connect(srv.address().port, '127.0.0.1', () => c.end('ping'));
      c.on('data', d => got += d);
      c.on('end', () => { srv.close(); resolve(got); });
      c.on('error', e => { srv.close(); resolve('error ' + e.code); });
    });
  });
}
exports.handler = async (event) => {
  const t0 = ticks;
  await new Promise(r => setTimeout(r, 30));
  return {
    ticking: ticks > t0, self, cache: cache[12345], net: await echo(),
    bytes: crypto.randomBytes(16).toString('hex'), uuid: crypto.randomUUID(),
    int: crypto.randomInt(2 ** 47), math: Math.random(),
    key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
  };
};
