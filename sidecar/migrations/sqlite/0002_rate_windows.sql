-- Rate-limit window grants: how much of one entity's limit in one wall-clock minute has
-- been handed out to the gateway's Envoy processes (see src/store/grants.rs).
CREATE TABLE rate_windows (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    window_id BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    PRIMARY KEY (kind, id, window_id)
);
CREATE INDEX rate_windows_window_id ON rate_windows (window_id);
