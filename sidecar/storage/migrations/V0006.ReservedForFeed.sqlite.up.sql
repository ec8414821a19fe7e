-- V0006 (sqlite): a placeholder on branch keys only, so V0007 follows an unbroken 1..N.
-- The change feed's V0006 replaces this file when the branches are merged (delete it then).
SELECT 1;
