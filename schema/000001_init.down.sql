-- Removes everything 000001_init.up.sql created (run with search_path set to the schema).
DROP TABLE IF EXISTS security_event;
DROP TABLE IF EXISTS integration_log;
DROP TABLE IF EXISTS event_queue;
DROP TABLE IF EXISTS event_subscription;
DROP TABLE IF EXISTS system_event;
DROP TYPE IF EXISTS security_severity;
DROP TYPE IF EXISTS security_event_type;
DROP TYPE IF EXISTS integration_operation;
DROP TYPE IF EXISTS event_status;
DROP FUNCTION IF EXISTS topic_matches(text, text);
DROP FUNCTION IF EXISTS pattern_regex(text);
DROP FUNCTION IF EXISTS uuidv7();
