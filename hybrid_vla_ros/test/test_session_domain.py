"""GraphSession's DDS domain: two sessions on one machine must not drive each other's graph."""
from hybrid_vla_ros.bringup.session import PRIVATE_DOMAINS, GraphSession


def test_private_domain_when_none_is_set(monkeypatch):
    monkeypatch.delenv('ROS_DOMAIN_ID', raising=False)
    monkeypatch.delenv('ROS_AUTOMATIC_DISCOVERY_RANGE', raising=False)
    domains = {GraphSession().domain_id for _ in range(20)}
    assert all(PRIVATE_DOMAINS[0] <= d <= PRIVATE_DOMAINS[1] for d in domains)
    assert len(domains) > 1  # random per session, not a fixed shared one
    s = GraphSession()
    assert s.env['ROS_DOMAIN_ID'] == str(s.domain_id)
    assert s.env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'


def test_the_users_domain_is_respected(monkeypatch):
    monkeypatch.setenv('ROS_DOMAIN_ID', '42')
    monkeypatch.delenv('ROS_AUTOMATIC_DISCOVERY_RANGE', raising=False)
    s = GraphSession()
    assert s.domain_id == 42 and s.env['ROS_DOMAIN_ID'] == '42'
    assert 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in s.env  # the user's network setup, untouched
    assert GraphSession(domain_id=7).env['ROS_DOMAIN_ID'] == '7'
