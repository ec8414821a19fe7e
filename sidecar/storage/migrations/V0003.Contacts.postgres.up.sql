-- V0003 Contacts (postgres); applied once, in order, by schema_version 3.
CREATE TABLE contacts (user_id TEXT PRIMARY KEY, email TEXT NOT NULL);
