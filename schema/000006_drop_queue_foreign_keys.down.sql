-- Reverts 000006_drop_queue_foreign_keys.up.sql.
ALTER TABLE event_queue ADD CONSTRAINT event_queue_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES system_event (id);
ALTER TABLE event_queue ADD CONSTRAINT event_queue_subscription_id_fkey
    FOREIGN KEY (subscription_id) REFERENCES event_subscription (id) ON DELETE SET NULL;
