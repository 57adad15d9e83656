/*
 * replication: snapshot-based site-to-site replication (diffs by birth, dedup-aware
 * transfer). May import engine and common only. Not built yet: see the project issues.
 */
export {};
