package securitylog

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/store"
)

// Brute-force detection: rules, their defaults, and the escalation that
// Log.RecordFailedLogin runs in the failed login's transaction.

// BruteForceScope says what a brute-force rule counts.
type BruteForceScope string

// The brute-force scopes.
const (
	// ScopeAccountIP counts failures for one account from one IP.
	ScopeAccountIP BruteForceScope = "ACCOUNT_IP"
	// ScopeAccount counts failures for one account from any IP.
	ScopeAccount BruteForceScope = "ACCOUNT"
	// ScopeIP counts failures from one IP, for any account.
	ScopeIP BruteForceScope = "IP"
	// ScopeIPAccounts counts distinct accounts failing from one IP.
	ScopeIPAccounts BruteForceScope = "IP_ACCOUNTS"
)

// BruteForceRule escalates when Threshold failed logins of one key (see
// Scope) occur within Window.
type BruteForceRule struct {
	Name      string // unique among the rules; stored in the escalation
	Scope     BruteForceScope
	Threshold int
	Window    time.Duration // at least one second
}

// BruteForceConfig configures brute-force detection. The zero value
// enables DefaultBruteForceRules.
type BruteForceConfig struct {
	// Disabled turns detection off. Default false.
	Disabled bool
	// Rules replace the defaults when non-nil. Default
	// DefaultBruteForceRules().
	Rules []BruteForceRule
}

// DefaultBruteForceRules returns the rules used when
// BruteForceConfig.Rules is nil: 10 failures for one account from one IP in
// 15 minutes ("account_ip"), 20 for one account from any IP in an hour
// ("account"), and one IP failing against 10 accounts in 10 minutes
// ("ip_accounts"). Each call returns a new slice: change a copy to tune one
// rule and keep the others.
func DefaultBruteForceRules() []BruteForceRule {
	return []BruteForceRule{
		{Name: "account_ip", Scope: ScopeAccountIP, Threshold: 10, Window: 15 * time.Minute},
		{Name: "account", Scope: ScopeAccount, Threshold: 20, Window: time.Hour},
		{Name: "ip_accounts", Scope: ScopeIPAccounts, Threshold: 10, Window: 10 * time.Minute},
	}
}

// ruleArgs are the brute-force statement's per-rule arrays.
type ruleArgs struct {
	names, scopes, keys, ids []string
	thresholds, windows      []int64
	locks                    []int64 // advisory locks to take first, sorted
}

// ruleArgs returns the rules that apply to p (those whose key it has) as
// the statement's arrays, with the locks that serialise their counts.
func (l *Log) ruleArgs(p prepared) (ruleArgs, error) {
	var ra ruleArgs
	lockSet := map[int64]bool{}
	for _, r := range l.rules {
		key := ""
		switch r.Scope {
		case ScopeAccountIP:
			if p.account != "" && p.ev.IP != "" {
				key = p.account + "|" + p.ev.IP
			}
		case ScopeAccount:
			key = p.account
		case ScopeIP, ScopeIPAccounts:
			key = p.ev.IP
		}
		if key == "" {
			continue
		}
		id, err := uuid.NewV7()
		if err != nil {
			return ra, fmt.Errorf("securitylog: event id: %w", err)
		}
		ra.names, ra.scopes, ra.keys, ra.ids = append(ra.names, r.Name), append(ra.scopes, string(r.Scope)), append(ra.keys, key), append(ra.ids, id.String())
		ra.thresholds, ra.windows = append(ra.thresholds, int64(r.Threshold)), append(ra.windows, r.Window.Microseconds())
		if r.Scope == ScopeAccountIP || r.Scope == ScopeAccount {
			lockSet[l.lockKey("account:"+p.account)] = true
		}
		if r.Scope != ScopeAccount {
			lockSet[l.lockKey("ip:"+p.ev.IP)] = true
		}
	}
	for k := range lockSet {
		ra.locks = append(ra.locks, k)
	}
	slices.Sort(ra.locks)
	return ra, nil
}

// recordFailedLogin inserts a failed login and runs brute-force detection.
func (l *Log) recordFailedLogin(ctx context.Context, q outbox.Querier, p prepared) (FailedLoginResult, error) {
	ra, err := l.ruleArgs(p)
	if err != nil {
		return FailedLoginResult{}, err
	}
	if len(ra.locks) > 0 {
		if _, err := q.ExecContext(ctx, l.core.Store.Security.Lock, pq.Array(ra.locks)); err != nil {
			return FailedLoginResult{}, fmt.Errorf("securitylog: record failed login: lock: %w", err)
		}
	}
	ev, err := l.insert(ctx, q, p)
	if err != nil {
		return FailedLoginResult{}, err
	}
	res := FailedLoginResult{Event: ev}
	if len(ra.names) == 0 {
		return res, nil
	}
	var user any
	if p.userID != nil {
		user = p.userID
	}
	rows, err := q.QueryContext(ctx, l.core.Store.Security.BruteForce, pq.Array(ra.names), pq.Array(ra.scopes), pq.Array(ra.thresholds),
		pq.Array(ra.windows), pq.Array(ra.keys), pq.Array(ra.ids), p.account, p.ev.IP, user, l.core.Store.NowArg(), p.ev.UserAgent)
	if err != nil {
		return FailedLoginResult{}, fmt.Errorf("securitylog: brute-force detection: %w", err)
	}
	for rows.Next() {
		esc, err := scanEvent(rows)
		if err != nil {
			rows.Close()
			return FailedLoginResult{}, fmt.Errorf("securitylog: brute-force detection: %w", err)
		}
		res.Escalations = append(res.Escalations, esc)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return FailedLoginResult{}, fmt.Errorf("securitylog: brute-force detection: %w", err)
	}
	rows.Close()
	for _, esc := range res.Escalations {
		l.core.Logger.WarnContext(ctx, "brute-force login detected", slog.String("event_id", esc.ID.String()),
			slog.String("ip_address", esc.IP), slog.String("details", string(esc.Details)))
		if err := l.publish(ctx, q, esc); err != nil {
			return FailedLoginResult{}, err
		}
	}
	return res, nil
}

// lockKey is the advisory-lock key of an account or IP in this schema.
func (l *Log) lockKey(k string) int64 {
	return store.AdvisoryKey("outboxkit.bruteforce." + l.core.Schema + "." + k)
}
