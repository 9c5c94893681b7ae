# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/schema by behaviour: partition pruning, ranked search, the read-only role, the auditor, tenant isolation."""

from __future__ import annotations

import pytest

DB = 'hingecraft'


def psql(host, script, check=True):
    """Run SQL statements as postgres in one psql -c call (one implicit transaction; the last result is printed)."""
    cmd = host.run('runuser -u postgres -- psql -X -q -A -t -d %s -c %s', DB, script)
    if check:
        assert cmd.rc == 0, cmd.stderr
    return cmd


def value(host, script):
    return psql(host, script).stdout.strip().splitlines()[-1]


@pytest.fixture(scope='module')
def data(host):
    psql(host, """
        INSERT INTO app.members (member_id, tenant_id, country, email, display_name, bio, joined_at) VALUES
          (1, 'acme', 'DE', 'w@x', 'Walnut Carver', 'turns bowls', '2026-03-02'),
          (2, 'acme', 'US', 'o@x', 'Oak Fan', 'carves walnut spoons', '2026-03-03'),
          (3, 'globex', 'FR', 'c@x', 'Zoé Café', 'restores antique chairs', '2026-04-01'),
          (4, 'globex', 'JP', 'k@x', 'Kenji Ito', 'walnut and maple inlay', '2026-04-02')
        ON CONFLICT (member_id, country) DO UPDATE SET bio = EXCLUDED.bio, status = 'active';
        INSERT INTO app.donations (donation_id, tenant_id, member_id, campaign, country, amount, donated_at) VALUES
          (1, 'acme', 1, 'tool-library', 'DE', 25, '2026-03-05'), (2, 'globex', 3, 'scholarships', 'FR', 40, '2026-04-05')
        ON CONFLICT DO NOTHING;
    """)


def test_donations_prune_to_one_month(host, data):
    plan = psql(host, "EXPLAIN SELECT sum(amount) FROM app.donations "
                      "WHERE donated_at >= '2026-03-01' AND donated_at < '2026-04-01';").stdout
    assert 'donations_p2026_03' in plan
    assert 'donations_p2026_04' not in plan and 'donations_default' not in plan


def test_members_prune_to_one_country(host, data):
    plan = psql(host, "EXPLAIN SELECT * FROM app.members WHERE country = 'DE';").stdout
    assert 'members_de' in plan and 'members_us' not in plan and 'members_default' not in plan


def test_search_is_ranked_and_accent_insensitive(host, data):
    # name (weight A) ranks above bio (weight B); the superuser bypasses RLS, so all tenants are searched
    ranked = psql(host, "SELECT id FROM app.search_members('walnut') ORDER BY rank DESC, id;").stdout.split()
    assert ranked[0] == '1' and sorted(ranked) == ['1', '2', '4']
    assert value(host, "SELECT string_agg(id::text, ',') FROM app.search_members('cafe');") == '3'


def test_app_ro_cannot_write(host, data):
    r = psql(host, "SET ROLE app_ro; INSERT INTO app.clubs (club_id, tenant_id, name, country) "
                   "VALUES (99, 'acme', 'x', 'DE');", check=False)
    assert r.rc != 0 and 'permission denied' in r.stderr
    assert value(host, "SET ROLE app_ro; SELECT tenancy.set_tenant('acme'); SELECT count(*) FROM app.members;") == '2'


def test_auditor_reads_audit_rows_and_trail_is_append_only(host, data):
    psql(host, "SET app.username = 'verify'; UPDATE app.members SET bio = 'audited' WHERE member_id = 4;")
    assert int(value(host, "SET ROLE auditor; SELECT count(*) FROM audit.log "
                           "WHERE app_user = 'verify' AND 'bio' = ANY(changed_columns);")) >= 1
    r = psql(host, 'UPDATE audit.log SET app_user = NULL;', check=False)
    assert r.rc != 0 and 'append-only' in r.stderr
    r = psql(host, 'SET ROLE app_rw; DELETE FROM audit.log;', check=False)
    assert r.rc != 0 and 'permission denied' in r.stderr


def test_tenant_sees_only_its_rows(host, data):
    assert value(host, "SET ROLE app_rw; SELECT tenancy.set_tenant('globex'); "
                       "SELECT string_agg(DISTINCT tenant_id, ',') || ':' || count(*) FROM app.members;") == 'globex:2'
    assert value(host, "SET ROLE tenant_acme; SET app.tenant_id = 'globex'; "
                       "SELECT string_agg(DISTINCT tenant_id, ',') || ':' || count(*) FROM app.members;") == 'acme:2'


def test_bi_reader_reads_dashboards_not_tables(host, data):
    psql(host, 'REFRESH MATERIALIZED VIEW app.mv_donation_summary;')
    assert value(host, "SET ROLE bi_reader; SELECT total FROM app.mv_donation_summary "
                       "WHERE month = '2026-03-01' AND campaign = 'tool-library';") == '25.00'
    r = psql(host, 'SET ROLE bi_reader; SELECT count(*) FROM app.members;', check=False)
    assert r.rc != 0 and 'permission denied' in r.stderr


def test_restrictive_policy_hides_closed_members_from_app_ro(host, data):
    psql(host, "UPDATE app.members SET status = 'closed' WHERE member_id = 2;")
    assert value(host, "SET ROLE app_ro; SELECT tenancy.set_tenant('acme'); SELECT count(*) FROM app.members;") == '1'
    assert value(host, "SET ROLE app_rw; SELECT tenancy.set_tenant('acme'); SELECT count(*) FROM app.members;") == '2'
