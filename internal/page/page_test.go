package page

import (
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"
)

func TestLimit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		n, want int
		err     bool
	}{
		{0, 100, false}, {1, 1, false}, {1000, 1000, false}, {1001, 1000, false}, {-1, 0, true},
	} {
		got, err := Limit(c.n, 100, 1000)
		var pe *Error
		if got != c.want || (err != nil) != c.err || (err != nil && (!errors.Is(err, ErrInvalid) || !errors.As(err, &pe) || pe.Field != "limit")) {
			t.Errorf("Limit(%d) = %d, %v; want %d, error %v", c.n, got, err, c.want, c.err)
		}
	}
}

func TestCursor(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.FixedZone("", 3600))
	id := uuid.MustParse("0190f6c2-0000-7000-8000-000000000001")
	gotAt, gotID, err := DecodeCursor(EncodeCursor(at, id))
	if err != nil || !gotAt.(time.Time).Equal(at) || gotAt.(time.Time).Location() != time.UTC || gotID.(uuid.UUID) != id {
		t.Fatalf("round trip: %v %v %v", gotAt, gotID, err)
	}
	if a, i, err := DecodeCursor(""); a != nil || i != nil || err != nil {
		t.Fatalf("empty cursor: %v %v %v", a, i, err)
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, c := range []string{"!", "garbage", enc("no-space"), enc("yesterday " + id.String()),
		enc(at.Format(time.RFC3339Nano) + " not-a-uuid")} {
		var pe *Error
		if _, _, err := DecodeCursor(c); !errors.Is(err, ErrInvalid) || !errors.As(err, &pe) || pe.Field != "cursor" {
			t.Errorf("cursor %q: %v", c, err)
		}
	}
}

func TestTimeArg(t *testing.T) {
	t.Parallel()
	if v := TimeArg(time.Time{}); v != nil {
		t.Errorf("zero time: %v", v)
	}
	at := time.Date(2024, 1, 1, 1, 0, 0, 0, time.FixedZone("", 3600))
	if v, ok := TimeArg(at).(time.Time); !ok || !v.Equal(at) || v.Location() != time.UTC {
		t.Errorf("time: %v", v)
	}
}

type row struct {
	at time.Time
	id uuid.UUID
}

func TestRead(t *testing.T) {
	t.Parallel()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	query := func(t *testing.T, n int, rowErr error) (*sql.Rows, error) {
		db, mock, err := sqlmock.New()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		rows := sqlmock.NewRows([]string{"at", "id"})
		for i := range n {
			rows.AddRow(base.Add(-time.Duration(i)*time.Second), ids[i].String())
		}
		if rowErr != nil {
			rows.RowError(n-1, rowErr)
		}
		mock.ExpectQuery("SELECT").WillReturnRows(rows)
		return db.Query("SELECT")
	}
	scan := func(rs *sql.Rows) (row, error) {
		var r row
		err := rs.Scan(&r.at, &r.id)
		return r, err
	}
	key := func(r row) (time.Time, uuid.UUID) { return r.at, r.id }

	// limit+1 rows: a full page and the cursor of its last row.
	rows, err := query(t, 3, nil)
	got, next, err := Read(rows, err, 2, scan, key)
	if err != nil || len(got) != 2 || got[1].id != ids[1] || next != EncodeCursor(got[1].at, ids[1]) {
		t.Fatalf("full page: %v %q %v", got, next, err)
	}
	// Up to limit rows: the last page.
	rows, err = query(t, 2, nil)
	if got, next, err = Read(rows, err, 2, scan, key); err != nil || len(got) != 2 || next != "" {
		t.Fatalf("last page: %v %q %v", got, next, err)
	}
	// The query's error, and a row's.
	boom := errors.New("boom")
	if _, _, err := Read[row](nil, boom, 2, scan, key); !errors.Is(err, boom) {
		t.Fatalf("query error: %v", err)
	}
	rows, err = query(t, 2, boom)
	if _, _, err := Read(rows, err, 2, scan, key); !errors.Is(err, boom) {
		t.Fatalf("row error: %v", err)
	}
	// A scan error.
	rows, err = query(t, 1, nil)
	if _, _, err := Read(rows, err, 2, func(*sql.Rows) (row, error) { return row{}, boom }, key); !errors.Is(err, boom) {
		t.Fatalf("scan error: %v", err)
	}
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	mk := func(field, reason string) error { return errors.New(field + "|" + reason) }
	_, err := Limit(-1, LimitDefault, LimitMax)
	if got := Translate(fmt.Errorf("list: %w", err), mk); got == nil || got.Error() != "limit|must not be negative, got -1" {
		t.Errorf("Translate(limit error) = %v", got)
	}
	other := errors.New("connection refused")
	if got := Translate(other, mk); got != other {
		t.Errorf("Translate(other) = %v, want it unchanged", got)
	}
}
