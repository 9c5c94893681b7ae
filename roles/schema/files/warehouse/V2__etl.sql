-- Incremental ETL app -> dw. Run: SELECT * FROM dw.etl_run(); (pg_cron schedules it.)
-- * One run at a time (transaction-level advisory lock); the whole run is one transaction: a failed run leaves
--   the warehouse and the watermarks as they were, and a rerun starts from the same place.
-- * Dimensions: countries and clubs (type 1, updated only when different); members type 2 - a changed tracked
--   attribute (tenant, country, status, display name) closes the current version (valid_to) and opens a new one.
--   The members table has no change timestamp, so the current versions are compared by hash (one hash join).
-- * Facts: rows with an id above the watermark (minus `overlap`, so rows whose ids committed out of order are not
--   missed); ON CONFLICT DO NOTHING makes every rerun idempotent. Late-arriving rows (an old donated_at with a new
--   id) are loaded like any other, with the member version valid at the event time (the first version when the
--   event predates it). A fact whose member is not (yet) known is held back: the watermark stops below it.
CREATE FUNCTION dw.etl_run(overlap bigint DEFAULT 10000)
RETURNS TABLE (step text, rows_changed bigint)
LANGUAGE plpgsql
SET timezone TO 'UTC'
AS $etl$
DECLARE
    run_ts timestamptz := clock_timestamp();
    n bigint;
    wm bigint;
    held bigint;
    top bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('dw.etl_run'));

    INSERT INTO dw.dim_country (country)
    SELECT country FROM app.members UNION SELECT country FROM app.clubs UNION SELECT country FROM app.donations
    ON CONFLICT (country) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT; step := 'dim_country'; rows_changed := n; RETURN NEXT;

    INSERT INTO dw.dim_club AS d (club_id, tenant_id, name, country_key)
    SELECT c.club_id, c.tenant_id, c.name, k.country_key FROM app.clubs c JOIN dw.dim_country k USING (country)
    ON CONFLICT (club_id) DO UPDATE SET tenant_id = excluded.tenant_id, name = excluded.name,
        country_key = excluded.country_key
    WHERE (d.tenant_id, d.name, d.country_key) IS DISTINCT FROM (excluded.tenant_id, excluded.name, excluded.country_key);
    GET DIAGNOSTICS n = ROW_COUNT; step := 'dim_club'; rows_changed := n; RETURN NEXT;

    CREATE TEMPORARY TABLE hc_etl_members ON COMMIT DROP AS
    SELECT m.member_id, m.tenant_id, k.country_key, m.status, m.display_name, m.joined_at,
           md5(concat_ws('|', m.tenant_id, m.country, m.status, m.display_name)) AS attr_hash
    FROM app.members m JOIN dw.dim_country k USING (country);
    UPDATE dw.dim_member d SET valid_to = run_ts FROM hc_etl_members s
    WHERE d.member_id = s.member_id AND d.valid_to IS NULL AND d.attr_hash <> s.attr_hash;
    GET DIAGNOSTICS n = ROW_COUNT; step := 'dim_member_closed'; rows_changed := n; RETURN NEXT;
    INSERT INTO dw.dim_member (member_id, tenant_id, country_key, status, display_name, joined_at, attr_hash,
                               valid_from)
    SELECT s.member_id, s.tenant_id, s.country_key, s.status, s.display_name, s.joined_at, s.attr_hash, run_ts
    FROM hc_etl_members s
    WHERE NOT EXISTS (SELECT 1 FROM dw.dim_member d WHERE d.member_id = s.member_id AND d.valid_to IS NULL);
    GET DIAGNOSTICS n = ROW_COUNT; step := 'dim_member_opened'; rows_changed := n; RETURN NEXT;

    -- donations
    SELECT w.high_id INTO wm FROM dw.etl_watermark w WHERE w.source = 'donations' FOR UPDATE;
    INSERT INTO dw.dim_date (date_key, day, year, quarter, month, day_of_week)
    SELECT to_char(x.day, 'YYYYMMDD')::int, x.day, extract(year FROM x.day), extract(quarter FROM x.day),
           extract(month FROM x.day), extract(isodow FROM x.day)
    FROM (SELECT DISTINCT d.donated_at::date AS day FROM app.donations d WHERE d.donation_id > wm - overlap
          UNION SELECT DISTINCT a.occurred_at::date FROM app.member_activity a
          WHERE a.activity_id > (SELECT w.high_id FROM dw.etl_watermark w WHERE w.source = 'member_activity') - overlap) x
    ON CONFLICT (date_key) DO NOTHING;
    INSERT INTO dw.fact_donation (donation_id, donated_at, date_key, member_key, country_key, campaign, tenant_id,
                                  amount, currency)
    SELECT d.donation_id, d.donated_at, to_char(d.donated_at, 'YYYYMMDD')::int, mv.member_key, k.country_key,
           d.campaign, d.tenant_id, d.amount, d.currency
    FROM app.donations d JOIN dw.dim_country k USING (country)
    CROSS JOIN LATERAL (SELECT m.member_key FROM dw.dim_member m WHERE m.member_id = d.member_id
                        ORDER BY m.valid_from <= d.donated_at DESC,
                                 CASE WHEN m.valid_from <= d.donated_at THEN m.valid_from END DESC NULLS LAST,
                                 m.valid_from
                        LIMIT 1) mv
    WHERE d.donation_id > wm - overlap
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT; step := 'fact_donation'; rows_changed := n; RETURN NEXT;
    SELECT min(d.donation_id) INTO held FROM app.donations d WHERE d.donation_id > wm - overlap
        AND NOT EXISTS (SELECT 1 FROM dw.dim_member m WHERE m.member_id = d.member_id);
    SELECT max(d.donation_id) INTO top FROM app.donations d WHERE d.donation_id > wm;
    UPDATE dw.etl_watermark SET high_id = greatest(high_id, coalesce(least(held - 1, top), top, high_id)),
        rows_loaded = rows_loaded + n, run_at = run_ts WHERE source = 'donations';

    -- member activity
    SELECT w.high_id INTO wm FROM dw.etl_watermark w WHERE w.source = 'member_activity' FOR UPDATE;
    INSERT INTO dw.fact_activity (activity_id, occurred_at, date_key, member_key, tenant_id, kind)
    SELECT a.activity_id, a.occurred_at, to_char(a.occurred_at, 'YYYYMMDD')::int, mv.member_key, a.tenant_id, a.kind
    FROM app.member_activity a
    CROSS JOIN LATERAL (SELECT m.member_key FROM dw.dim_member m WHERE m.member_id = a.member_id
                        ORDER BY m.valid_from <= a.occurred_at DESC,
                                 CASE WHEN m.valid_from <= a.occurred_at THEN m.valid_from END DESC NULLS LAST,
                                 m.valid_from
                        LIMIT 1) mv
    WHERE a.activity_id > wm - overlap
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT; step := 'fact_activity'; rows_changed := n; RETURN NEXT;
    SELECT min(a.activity_id) INTO held FROM app.member_activity a WHERE a.activity_id > wm - overlap
        AND NOT EXISTS (SELECT 1 FROM dw.dim_member m WHERE m.member_id = a.member_id);
    SELECT max(a.activity_id) INTO top FROM app.member_activity a WHERE a.activity_id > wm;
    UPDATE dw.etl_watermark SET high_id = greatest(high_id, coalesce(least(held - 1, top), top, high_id)),
        rows_loaded = rows_loaded + n, run_at = run_ts WHERE source = 'member_activity';
END
$etl$;
