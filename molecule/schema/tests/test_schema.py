# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/schema by behaviour: partition pruning, ranked search (and its tenant isolation), the read-only role, the
auditor, tenant isolation, and drift: a changed view query or search weight in the spec is applied by a rerun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

import pytest
import yaml

DB = 'hingecraft'
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))


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
    ranked = psql(host, "SELECT member_id FROM app.search_members('walnut') ORDER BY rank DESC, member_id;").stdout.split()
    assert ranked[0] == '1' and sorted(ranked) == ['1', '2', '4']
    assert value(host, "SELECT string_agg(member_id::text, ',') FROM app.search_members('cafe');") == '3'


def test_search_keeps_tenants_apart(host, data):
    """The index-backed match (SECURITY DEFINER, BYPASSRLS owner) filters by the caller's tenant; rows come back
    through RLS. Member 4 (globex) also mentions walnut."""
    search = "SELECT string_agg(member_id::text, ',' ORDER BY member_id) FROM app.search_members('walnut');"
    assert value(host, f"SET ROLE app_ro; SELECT tenancy.set_tenant('acme'); {search}") == '1,2'
    assert value(host, f"SET ROLE app_ro; SELECT tenancy.set_tenant('globex'); {search}") == '4'
    # a tenant's own role: the setting is ignored, and the match itself is out of reach
    assert value(host, f"SET ROLE tenant_acme; SET app.tenant_id = 'globex'; {search}") == '1,2'
    r = psql(host, "SET ROLE tenant_acme; SELECT * FROM app.search_members_match('walnut', 'globex');", check=False)
    assert r.rc != 0 and 'permission denied for function search_members_match' in r.stderr
    # the match is a SECURITY DEFINER function with a fixed search_path, owned by a non-superuser BYPASSRLS role
    assert value(host, "SELECT p.prosecdef::text || ' ' || r.rolname || ' ' || r.rolsuper::text || ' ' || "
                       "r.rolbypassrls::text || ' ' || array_to_string(p.proconfig, ';') FROM pg_proc p "
                       "JOIN pg_roles r ON r.oid = p.proowner WHERE p.proname = 'search_members_match';") == \
        'true search_owner false true search_path=pg_catalog, pg_temp'


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


def run_schema_role(extra_vars):
    """Run playbooks/schema.yml (views and search phases) against this scenario's instance; return changed=N."""
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        json.dump(extra_vars, f)
    try:
        inventory = os.path.dirname(os.environ['MOLECULE_INVENTORY_FILE'])
        run = subprocess.run(
            [os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), '-i', inventory,
             os.path.join(REPO, 'playbooks', 'schema.yml'), '--tags', 'schema_views,schema_search', '-e', '@' + f.name],
            capture_output=True, text=True, timeout=600, check=False)
    finally:
        os.unlink(f.name)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return sum(int(n) for n in re.findall(r'changed=(\d+)', run.stdout))


def search_expression(host):
    return value(host, "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a "
                       "ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
                       "WHERE d.adrelid = 'app.members'::regclass AND a.attname = 'search';")


def test_changed_view_and_weight_in_the_spec_are_applied(host, data):
    """Drift through the spec: rerun the role with another view query and another weight, check the catalog, then
    rerun with the scenario's spec and check that it is back."""
    with open(os.path.join(REPO, 'roles', 'schema', 'defaults', 'main.yml'), encoding='utf-8') as f:
        defaults = yaml.safe_load(f)
    views = defaults['schema_matviews']
    altered_views = [dict(v, query=v['query'].replace('count(*) AS new_members',
                                                      "count(*) AS new_members, count(DISTINCT tenant_id) AS tenants"))
                     if v['name'] == 'mv_member_stats_daily' else v for v in views]
    altered_search = [dict(t, weights={'display_name': 'A', 'bio': 'C'}) if t['table'] == 'members' else t
                      for t in defaults['schema_search']]
    assert "'B'::\"char\"" in search_expression(host)
    assert run_schema_role({'schema_matviews': altered_views, 'schema_search': altered_search}) >= 2
    assert value(host, "SELECT pg_get_viewdef('app.mv_member_stats_daily') LIKE '%tenants%';") == 't'
    assert "'C'::\"char\"" in search_expression(host) and "'B'::\"char\"" not in search_expression(host)
    # grants survive the rebuilt view; the bio now ranks as C
    rows = value(host, "SELECT count(*) FROM app.mv_member_stats_daily;")
    assert int(rows) > 0, "the rebuilt view is empty: the grant check below would prove nothing"
    assert value(host, "SET ROLE bi_reader; SELECT count(*) FROM app.mv_member_stats_daily;") == rows
    assert run_schema_role({}) >= 2
    assert value(host, "SELECT pg_get_viewdef('app.mv_member_stats_daily') LIKE '%tenants%';") == 'f'
    assert "'B'::\"char\"" in search_expression(host)
    assert run_schema_role({}) == 0
