module github.com/outboxkit/outbox

go 1.25.11

require (
	code.dny.dev/ssrf v0.3.0
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/golang-migrate/migrate/v4 v4.20.1
	github.com/google/uuid v1.6.0
	github.com/jmoiron/sqlx v1.4.0
	github.com/lib/pq v1.12.3
	github.com/realclientip/realclientip-go v1.0.0
	github.com/standard-webhooks/standard-webhooks/libraries v0.0.1
	go.uber.org/goleak v1.3.0
)

require github.com/DATA-DOG/go-sqlmock v1.5.2

require golang.org/x/text v0.38.0 // indirect
