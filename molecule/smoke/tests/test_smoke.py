def test_systemd(host):
    assert host.run("systemctl is-system-running --wait").stdout.strip() in ("running", "degraded")
