# Rewrites Go code from the outboxkit v0.2 API to v0.3 (docs/migrating-from-0.2.md).
# Use: sed -E -i -f migrate-0.3.sed $(git ls-files '*.go') && goimports -w $(git ls-files '*.go')
# Handle constructors of the two logs.
s/\b([A-Za-z_][A-Za-z0-9_.]*)\.NewIntegrationLog\(/integrationlog.New(\1, /g
s/\b([A-Za-z_][A-Za-z0-9_.]*)\.NewSecurityLog\(/securitylog.New(\1, /g
# Integration log.
s/\boutbox\.IntegrationLogConfig\b/integrationlog.Config/g
s/\boutbox\.IntegrationBufferStats\b/integrationlog.BufferStats/g
s/\boutbox\.IntegrationRecord\b/integrationlog.Record/g
s/\boutbox\.IntegrationFilter\b/integrationlog.Filter/g
s/\boutbox\.IntegrationPage\b/integrationlog.Page/g
s/\boutbox\.IntegrationWindow\b/integrationlog.Window/g
s/\boutbox\.IntegrationStats\b/integrationlog.Stats/g
s/\boutbox\.IntegrationLog\b/integrationlog.Log/g
s/\boutbox\.HTTPRecordOptions\b/integrationlog.HTTPOptions/g
s/\boutbox\.(ExternalIDFromJSON|APICall|WebhookReceipt|DataSyncRun|Operation|OpAPICallMade|OpWebhookReceived|OpDataSync|BufferFullPolicy|DropWhenFull|BlockWhenFull|ErrRecordsNotWritten|ErrInvalidRecord)\b/integrationlog.\1/g
# Security log.
s/\boutbox\.SecurityLogConfig\b/securitylog.Config/g
s/\boutbox\.SecurityEventInput\b/securitylog.Input/g
s/\boutbox\.SecurityEventType\b/securitylog.EventType/g
s/\boutbox\.SecurityEvent\b/securitylog.Event/g
s/\boutbox\.SecurityFilter\b/securitylog.Filter/g
s/\boutbox\.SecurityPage\b/securitylog.Page/g
s/\boutbox\.SecurityLog\b/securitylog.Log/g
s/\boutbox\.SecurityTopicPrefix\b/securitylog.TopicPrefix/g
s/\boutbox\.(FailedLogin|FailedLoginResult|PermissionDenied|SuspiciousActivity|Severity|SeverityLow|SeverityMedium|SeverityHigh|SeverityCritical|EventFailedLogin|EventPermissionDenied|EventSuspiciousActivity|AlreadyReviewedError|ErrAlreadyReviewed|BruteForceConfig|BruteForceRule|BruteForceScope|ScopeAccount|ScopeAccountIP|ScopeIP|ScopeIPAccounts|DefaultBruteForceRules|ClientIPConfig|ClientIPResolver|NewClientIPResolver|ParseIP|ForwardedForHeader)\b/securitylog.\1/g
# Redaction.
s/\boutbox\.RedactionRules\b/redact.Rules/g
s/\boutbox\.NewRedactor\(/redact.New(/g
s/\boutbox\.DefaultRedactor\(/redact.Default(/g
s/\boutbox\.RedactedMarker\b/redact.Marker/g
s/\boutbox\.(Redactor|TruncatedMarker|MaxBodyBytesDefault)\b/redact.\1/g
# Keys.
s/\boutbox\.KeyProvider\b/keys.Provider/g
s/\boutbox\.StaticKeys\(/keys.Static(/g
s/\boutbox\.ParseKeys\(/keys.Parse(/g
s/\boutbox\.KeysFromEnv\(/keys.FromEnv(/g
s/\boutbox\.NewKeySpec\(/keys.NewSpec(/g
s/\boutbox\.KeysEnvDefault\b/keys.EnvDefault/g
s/\boutbox\.Key\{/keys.Key{/g
s/\boutbox\.ErrKeyNotFound\b/keys.ErrKeyNotFound/g
s/\boutbox\.ErrSecretsDecrypt\b/keys.ErrDecrypt/g
# Subscription configs: package subconfig.
s/\boutbox\.SubscriptionConfig\b/subconfig.Config/g
s/\boutbox\.ParseSubscriptionConfig\(/subconfig.Parse(/g
s/\boutbox\.SealedSecrets\b/subconfig.Sealed/g
s/\boutbox\.SecretHeader\(/subconfig.SecretHeader(/g
s/\boutbox\.Duration\b/subconfig.Duration/g
