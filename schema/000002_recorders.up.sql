-- outboxkit schema, version 2: indexes for the security recorder's
-- brute-force detection (run with search_path set to the schema).

-- Failed logins by account key (event_details->>'account') and time.
CREATE INDEX security_event_failed_login_account_idx
    ON security_event ((event_details->>'account'), occurred_at)
    WHERE event_type = 'FAILED_LOGIN';

-- Brute-force escalations by rule and key, to record one per window.
CREATE INDEX security_event_brute_force_idx
    ON security_event ((event_details->>'rule'), (event_details->>'key'), occurred_at)
    WHERE event_type = 'SUSPICIOUS_ACTIVITY' AND event_details->>'kind' = 'brute_force';
