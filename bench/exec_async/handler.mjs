// bench/exec_async/handler.mjs - the exec-async scenario's handler on the Node SDK: awaits
// 10 ms per message (a timer standing in for I/O) and, at the N-th message, writes the done
// marker the driver waits for: "<count> <realtime ns> <monotonic ns>", as the no-op plugin
// does. Arguments: SDK_ENTRY N MARKER [MAX_INFLIGHT].
import { writeFileSync } from 'node:fs';

const [sdk, n, marker, inflight] = process.argv.slice(2);
const { handle } = await import(sdk);
const expect = Number(n);
let count = 0;

handle(async () => {
  await new Promise((resolve) => setTimeout(resolve, 10));
  if (++count === expect) {
    const wall = BigInt(Date.now()) * 1000000n;
    writeFileSync(marker, `${count} ${wall} ${process.hrtime.bigint()}\n`);
  }
}, { maxInflight: Number(inflight ?? 64) });
