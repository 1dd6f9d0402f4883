-- 004: outbox (placeholder).
SELECT 1;
