-- Removes everything 000002_recorders.up.sql created.
DROP INDEX IF EXISTS security_event_brute_force_idx;
DROP INDEX IF EXISTS security_event_failed_login_account_idx;
