-- Removes what 000004_webhook_health.up.sql added.
DROP INDEX IF EXISTS integration_log_last_success_idx;
