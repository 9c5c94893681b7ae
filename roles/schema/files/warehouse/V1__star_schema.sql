-- Warehouse star schema (dw) fed from the operational schema (app) by dw.etl_run() (V2).
-- Dimensions: date, country, club (type 1), member (slowly changing, type 2). Facts: donation, activity.
CREATE SCHEMA IF NOT EXISTS dw;

CREATE TABLE dw.dim_date (
    date_key integer PRIMARY KEY,            -- yyyymmdd
    day date NOT NULL UNIQUE,
    year smallint NOT NULL,
    quarter smallint NOT NULL,
    month smallint NOT NULL,
    day_of_week smallint NOT NULL            -- ISO: 1 = Monday
);

CREATE TABLE dw.dim_country (
    country_key smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    country char(2) NOT NULL UNIQUE
);

CREATE TABLE dw.dim_club (
    club_key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    club_id bigint NOT NULL UNIQUE,
    tenant_id text NOT NULL,
    name text NOT NULL,
    country_key smallint NOT NULL REFERENCES dw.dim_country
);

-- Type 2: one row per version of a member's tracked attributes; valid_to is NULL for the current version.
CREATE TABLE dw.dim_member (
    member_key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id bigint NOT NULL,
    tenant_id text NOT NULL,
    country_key smallint NOT NULL REFERENCES dw.dim_country,
    status text NOT NULL,
    display_name text NOT NULL,
    joined_at timestamptz NOT NULL,
    attr_hash text NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to timestamptz
);
CREATE UNIQUE INDEX dim_member_current ON dw.dim_member (member_id) WHERE valid_to IS NULL;
CREATE INDEX dim_member_versions ON dw.dim_member (member_id, valid_from);

CREATE TABLE dw.fact_donation (
    donation_id bigint NOT NULL,
    donated_at timestamptz NOT NULL,
    date_key integer NOT NULL REFERENCES dw.dim_date,
    member_key bigint NOT NULL REFERENCES dw.dim_member,
    country_key smallint NOT NULL REFERENCES dw.dim_country,
    campaign text NOT NULL,
    tenant_id text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    currency char(3) NOT NULL,
    PRIMARY KEY (donation_id, donated_at)
);
CREATE INDEX fact_donation_date ON dw.fact_donation (date_key);

CREATE TABLE dw.fact_activity (
    activity_id bigint PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    date_key integer NOT NULL REFERENCES dw.dim_date,
    member_key bigint NOT NULL REFERENCES dw.dim_member,
    tenant_id text NOT NULL,
    kind text NOT NULL
);
CREATE INDEX fact_activity_date ON dw.fact_activity (date_key);

-- High-water marks of the incremental loads: the largest source id loaded per fact.
CREATE TABLE dw.etl_watermark (
    source text PRIMARY KEY,
    high_id bigint NOT NULL DEFAULT 0,
    rows_loaded bigint NOT NULL DEFAULT 0,
    run_at timestamptz
);
INSERT INTO dw.etl_watermark (source) VALUES ('donations'), ('member_activity');
