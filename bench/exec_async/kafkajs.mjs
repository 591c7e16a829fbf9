// bench/exec_async/kafkajs.mjs - the kafkajs peer of the exec-async scenario: a consumer group
// member with eachMessage awaiting 10 ms per message and partitionsConsumedConcurrently = the
// topic's partitions (kafkajs runs one partition's messages one at a time), auto-commit
// at most every 100 ms. At the N-th message it writes the done marker; on SIGTERM it commits
// what it handled (each partition's messages are handled in order, so one past the highest
// handled offset) and disconnects. Arguments: KAFKAJS_DIR BOOTSTRAP TOPIC GROUP N MARKER
// PARTITIONS.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';

const [dir, bootstrap, topic, group, n, marker, partitions] = process.argv.slice(2);
const { Kafka, logLevel } = createRequire(`${dir}/`)('kafkajs');
const kafka = new Kafka({ clientId: 'bench-exec-async', brokers: [bootstrap], logLevel: logLevel.WARN });
const consumer = kafka.consumer({ groupId: group });
const expect = Number(n);
const handled = new Map(); // partition -> highest offset handled
let count = 0;

process.on('SIGTERM', async () => {
  await consumer.commitOffsets([...handled].map(([partition, offset]) => (
    { topic, partition, offset: (BigInt(offset) + 1n).toString() })));
  await consumer.disconnect();
  process.exit(0);
});
await consumer.connect();
await consumer.subscribe({ topics: [topic], fromBeginning: true });
await consumer.run({
  partitionsConsumedConcurrently: Number(partitions),
  autoCommitInterval: 100,
  eachMessage: async ({ partition, message }) => {
    await new Promise((resolve) => setTimeout(resolve, 10));
    handled.set(partition, message.offset);
    if (++count === expect) {
      const wall = BigInt(Date.now()) * 1000000n;
      writeFileSync(marker, `${count} ${wall} ${process.hrtime.bigint()}\n`);
    }
  },
});
