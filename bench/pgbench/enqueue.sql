\set n random(100000000, 999999999)
BEGIN;
INSERT INTO outbox_bench (topic, payload, status, retry_count, max_retries)
VALUES ('orders.created', format('{"order_id":%s,"customer_id":"cust-%s","currency":"EUR","items":[{"sku":"SKU-%s","qty":2,"price_cents":1999},{"sku":"SKU-%s","qty":1,"price_cents":4999}],"source":"checkout-service"}', :n::bigint, :n::bigint, :n::bigint, :n::bigint)::jsonb, 'PENDING', 0, 3);
COMMIT;
