"""SIP accounts (pure): credentials, HA1, the ARI field lists; the RTP pcap SIPp plays."""

from __future__ import annotations

import hashlib
import struct

import pytest

from callcenter.sandbox.sipp import PT_EVENT, PT_PCMU, rtp_pcap
from callcenter.sip.accounts import (
    AccountError,
    aor_fields,
    auth_fields,
    check_username,
    digest_ha1,
    endpoint_fields,
    expected,
    field_value,
    matches,
    new_account,
    objects,
    web_endpoint,
)


def test_a_new_account_keeps_only_the_digest_of_a_random_password() -> None:
    account, creds = new_account("1001", realm="callcenter", server="10.0.0.5:5060",
                                 display_name="周")
    assert (creds.username, creds.server, account.endpoint) == ("1001", "10.0.0.5:5060",
                                                                 "PJSIP/1001")
    assert len(creds.password) >= 24
    assert account.ha1 == hashlib.md5(f"1001:callcenter:{creds.password}".encode()).hexdigest()
    assert creds.password not in repr(account) and account.ha1 not in repr(account)
    assert creds.password not in repr(creds)
    other, other_creds = new_account("1001", realm="callcenter", server="x:1")
    assert other_creds.password != creds.password and other.ha1 != account.ha1


def test_digest_ha1_is_rfc_2617() -> None:
    # The example of Asterisk's own documentation for password_digest.
    assert digest_ha1("myname", "myrealm", "mypassword") == "dce9ccd0a69e3ef90d8b9bf725053e78"


@pytest.mark.parametrize("user", ["", "a b", "x;y", "trunk-loopback", "a" * 41, "sip:1001"])
def test_unsafe_or_reserved_user_names_are_refused(user: str) -> None:
    with pytest.raises(AccountError):
        new_account("agent", realm="r", server="s", username=user or " ")


def test_fields_send_the_digest_not_the_password_and_lock_the_phone_in() -> None:
    account, creds = new_account("a1", realm="callcenter", server="s", username="2001",
                                 display_name='Bad "name" <x>')
    auth = auth_fields(account)
    assert field_value(auth, "password_digest") == f"md5:{account.ha1}"
    assert creds.password not in str(auth) and field_value(auth, "password") is None
    endpoint = endpoint_fields(account)
    assert field_value(endpoint, "context") == "agent-phones"
    assert field_value(endpoint, "allow") == "!all,ulaw,alaw"
    assert field_value(endpoint, "accountcode") == "a1"
    assert field_value(endpoint, "callerid") == '"Bad name x" <2001>'
    assert field_value(aor_fields(account), "max_contacts") == "1"
    nameless, _ = new_account("a2", realm="r", server="s")  # Asterisk drops a bare "<user>"
    assert field_value(endpoint_fields(nameless), "callerid") == '"a2" <a2>'


def test_matches_compares_what_ari_shows() -> None:
    account, _ = new_account("a1", realm="callcenter", server="s")
    shown = [{"attribute": "password_digest", "value": f"MD5:{account.ha1}"},
             {"attribute": "username", "value": "a1"}, {"attribute": "realm",
             "value": "callcenter"}, {"attribute": "auth_type", "value": "digest"}]
    auth = next(want for kind, _name, want in expected(account) if kind == "auth")
    assert matches(auth, shown)
    assert not matches(auth, shown[1:])
    assert not matches(auth, None)


def test_every_account_has_a_browser_softphone_endpoint() -> None:
    account, _ = new_account("a1", realm="callcenter", server="s")
    names = [(kind, name) for kind, name, _fields in objects(account)]
    assert names == [("auth", "a1"), ("aor", "a1"), ("endpoint", "a1"), ("aor", "a1-web"),
                     ("endpoint", "a1-web")]
    web = dict((f["attribute"], f["value"]) for f in objects(account)[-1][2])
    assert (web["webrtc"], web["auth"], web["aors"], web["context"]) == (
        "yes", "a1", "a1-web", "agent-phones")
    assert web_endpoint("PJSIP/a1") == "PJSIP/a1-web"
    assert web_endpoint("Local/1001@sim-agents/n") is None
    assert web_endpoint("PJSIP/a1-web") is None
    with pytest.raises(AccountError):
        check_username("zhang-web")


def _packets(pcap: bytes) -> list[tuple[float, int, bool, int, bytes]]:
    out, pos = [], 24
    assert struct.unpack("<I", pcap[:4])[0] == 0xA1B2C3D4
    while pos < len(pcap):
        sec, usec, incl, _ = struct.unpack("<IIII", pcap[pos:pos + 16])
        frame = pcap[pos + 16:pos + 16 + incl]
        rtp = frame[14 + 20 + 8:]
        _v, mpt, _seq, ts, _ssrc = struct.unpack("!BBHII", rtp[:12])
        out.append((sec + usec / 1e6, mpt & 0x7F, bool(mpt & 0x80), ts, rtp[12:]))
        pos += 16 + incl
    return out


def test_rtp_pcap_is_paced_g711_with_rfc4733_digits() -> None:
    audio = bytes(range(256)) * 5  # 1280 bytes = 8 packets
    packets = _packets(rtp_pcap(audio, dtmf=[(1.0, "1")], lead_s=1.5, ssrc=7))
    audio_packets = [p for p in packets if p[1] == PT_PCMU]
    events = [p for p in packets if p[1] == PT_EVENT]
    assert all(len(p[4]) == 160 for p in audio_packets)
    assert [p[0] for p in audio_packets[:3]] == [0.0, 0.02, 0.04]
    assert events[0][0] == pytest.approx(1.0) and events[0][2]  # marker on the first
    assert {p[3] for p in events} == {8000}  # one event: its start timestamp
    assert [p[4][0] for p in events] == [1] * len(events)
    ends = [p for p in events if p[4][1] & 0x80]
    assert len(ends) == 3 and struct.unpack("!H", ends[0][4][2:])[0] == 1280
    assert audio_packets[-1][4] == audio[-160:]  # the audio comes whole, after the digit
    assert audio_packets[-8][0] >= 1.5
