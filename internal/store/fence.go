package store

// MigrationsTable is golang-migrate's history table in the schema (the
// root's MigrationsTable).
const MigrationsTable = "outboxkit_schema_migrations"

// FenceNotifyPayload is the payload of the NOTIFY a migration that moves
// the version fence sends on the schema's Channel (Enqueue's notifies
// carry none): a running dispatcher reads the fence again.
const FenceNotifyPayload = "fence"

// Version fence statements (migration 10). Both reads work on a schema
// without the fence table: FenceTables looks the tables up first, so that
// no statement fails (a failed statement would abort the caller's
// transaction, which Enqueue reads the fence through).
const (
	// FenceTables reports whether the fence table and golang-migrate's
	// history table exist.
	FenceTables = `SELECT to_regclass('{s}.outboxkit_fence') IS NOT NULL,
	to_regclass('{s}.` + MigrationsTable + `') IS NOT NULL`

	// FenceRead reads the fence: the schema's version and the lowest
	// release it admits.
	FenceRead = `SELECT schema_version, min_release FROM {s}.outboxkit_fence`

	// FenceMigrations reads golang-migrate's history: the last migration
	// applied and whether it failed half-way (or is running).
	FenceMigrations = `SELECT version, dirty FROM {s}.` + MigrationsTable
)
