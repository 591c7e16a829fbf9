// bench/seed/payments.mjs - the seed's at-least-once payments consumer (the article's
// AtLeastOnceConsumer), in JavaScript: eachMessage parses the payment, processes it
// idempotently (INSERT ... ON CONFLICT (idempotency_key) DO NOTHING) and commits the
// message's offset + 1 after each message, auto-commit off. What differs from the article
// and why is in bench/seed/README.md. SIGTERM disconnects and exits 0.
// Arguments: PEERS_DIR BOOTSTRAP TOPIC GROUP PG_URL TABLE
import { createRequire } from 'node:module';

const [dir, bootstrap, topic, group, pgUrl, table] = process.argv.slice(2);
const require = createRequire(`${dir}/`);
const { Kafka, logLevel } = require('kafkajs');
const pg = require('pg');

class AtLeastOnceConsumer {
  kafka = new Kafka({
    clientId: 'payment-processor',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
  });

  consumer = this.kafka.consumer({
    groupId: group,
    allowAutoTopicCreation: false,
  });

  db = new pg.Pool({ connectionString: pgUrl });

  async start() {
    await this.consumer.connect();
    await this.consumer.subscribe({ topic, fromBeginning: true });

    await this.consumer.run({
      // Disable auto-commit; we'll commit manually
      autoCommitInterval: null,
      autoCommitThreshold: null,

      eachMessage: async ({ topic, partition, message }) => {
        try {
          // Process message
          const payment = JSON.parse(message.value.toString());
          await this.processPayment(payment);

          // Only commit after successful processing
          await this.consumer.commitOffsets([
            {
              topic,
              partition,
              offset: (Number(message.offset) + 1).toString(),
            },
          ]);

          console.log(`Processed and committed offset: ${message.offset}`);
        } catch (error) {
          console.error(`Failed to process payment:`, error);
          // Don't commit; message will be retried on next startup
          throw error;
        }
      },
    });
  }

  async stop() {
    await this.consumer.disconnect();
    await this.db.end();
  }

  async processPayment(payment) {
    // Idempotent: a payment seen before (same idempotency key) inserts nothing
    await this.chargeCard(payment.customerId, payment.amount);
    await this.db.query(
      `INSERT INTO ${table} (idempotency_key, customer_id, amount, status)
       VALUES ($1, $2, $3, 'completed')
       ON CONFLICT (idempotency_key) DO NOTHING`,
      [payment.idempotencyKey, payment.customerId, payment.amount]
    );
  }

  async chargeCard(customerId, amount) {
    // Call payment provider (a stub, as in the article)
  }
}

const consumer = new AtLeastOnceConsumer();
process.on('SIGTERM', async () => {
  await consumer.stop();
  process.exit(0);
});
await consumer.start();
