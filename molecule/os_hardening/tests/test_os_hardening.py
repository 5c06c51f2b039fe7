"""Behaviour of role os_hardening on the converged (unprivileged) container."""

import json
import os
import subprocess

import pytest

SYSCTL_FILE = "/etc/sysctl.d/90-locksmith-hardening.conf"
AUDIT_RULES = "/etc/audit/rules.d/50-locksmith.rules"
SHM = "/dev/shm"  # noqa: S108 - the mount point under test, not a temporary file
SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.path.dirname(os.path.dirname(SCENARIO)))


def _playbook(*args, timeout=900, command="ansible-playbook"):
    """Run ansible-playbook (or another Ansible command) against the scenario's inventory; return the process."""
    return subprocess.run(
        [command, "--inventory", os.environ["MOLECULE_INVENTORY_FILE"], *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
        timeout=timeout,
    )


def _as_deploy_over_ssh(host, command):
    """Log in as deploy with its key over sshd (PAM account and session stacks included) and run command."""
    return host.run(
        "runuser -u deploy -- ssh -i /home/deploy/.ssh/id_ed25519 -o BatchMode=yes "
        "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null deploy@127.0.0.1 %s",
        command,
    )


def test_sysctls_are_persisted_without_turning_forwarding_off(host):
    settings = {}
    for line in host.file(SYSCTL_FILE).content_string.splitlines():
        if line and not line.startswith("#"):
            key, _sep, value = line.partition("=")
            settings[key] = value
    assert settings["kernel.kptr_restrict"] == "2"
    assert settings["fs.protected_regular"] == "2"
    assert settings["fs.suid_dumpable"] == "0"
    assert settings["net.ipv4.conf.all.rp_filter"] == "1"
    assert not [key for key in settings if "forwarding" in key or key.endswith("ip_forward")]
    # systemd-sysctl accepts the file (it applies it at boot); in the container it cannot write.
    assert "Ignoring invalid" not in host.run("/lib/systemd/systemd-sysctl --cat-config").stderr


def test_skipped_controls_are_reported_with_a_reason_and_check_mode_changes_nothing():
    # The shared converge includes the role dynamically, so --tags would skip it: switch the other controls off.
    others = ["modules", "login_defs", "pwquality", "core_dumps", "shell", "permissions", "sudo_log", "upgrades"]
    others += ["legacy_packages", "banner", "tools", "shm", "compilers", "aide", "accounting"]
    # usbguard stays on: its skip (no USB bus here) is one of those checked below.
    run = _playbook(
        "--check",
        "--extra-vars",
        json.dumps({f"os_hardening_{name}_enabled": False for name in others}),
        os.path.join(PROJECT, "molecule", "_shared", "converge.yml"),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = " ".join(run.stdout.split())
    assert "sysctl live apply (dev, fs, kernel, net): /proc/sys is read-only here" in out
    assert "auditd service: no audit subsystem" in out
    assert "USBGuard daemon: no USB bus here (/sys/bus/usb/devices is missing)" in out
    assert "changed=0" in out


def test_modules_are_blocked(host):
    lines = host.file("/etc/modprobe.d/locksmith-hardening.conf").content_string.splitlines()
    for module in ("usb-storage", "cramfs", "dccp", "sctp", "firewire-core"):
        assert f"install {module} /bin/false" in lines
        assert f"blacklist {module}" in lines
    assert not [line for line in lines if "vfat" in line or "squashfs" in line]


def test_new_accounts_get_ageing_and_a_private_umask(host):
    host.run_expect([0, 9], "useradd --create-home --shell /bin/bash agingprobe")
    chage = host.check_output("chage -l agingprobe")
    assert "Maximum number of days between password change\t\t: 365" in chage
    assert "Minimum number of days between password change\t\t: 1" in chage
    assert host.check_output("runuser -l agingprobe -c umask") == "0027"
    assert host.file("/home/agingprobe").mode == 0o750


def test_weak_passwords_are_refused_and_strong_ones_accepted(host):
    host.run_expect([0, 9], "useradd pwprobe")
    weak = host.run("echo 'pwprobe:password1' | chpasswd")
    assert weak.rc != 0
    assert "BAD PASSWORD" in weak.stderr
    assert host.run("echo 'pwprobe:Vq7#tLm2-xR9!kWp' | chpasswd").rc == 0


def test_key_login_and_passwordless_sudo_still_work(host):
    login = _as_deploy_over_ssh(host, "sudo -n id -u")
    assert login.rc == 0, login.stderr
    assert login.stdout.strip() == "0"
    assert "deploy" in host.file("/var/log/sudo.log").content_string
    assert host.run("visudo -c").rc == 0


def test_login_shells_have_no_core_dumps_a_timeout_and_umask(host):
    # A login shell, as people get: /etc/profile and /etc/profile.d/ are read.
    script = "ulimit -c; ulimit -Hc; echo $TMOUT; umask; (TMOUT=5) || echo readonly"
    login = _as_deploy_over_ssh(host, f"bash -lc '{script}'")
    assert login.rc == 0, login.stderr
    assert login.stdout.split()[:4] == ["0", "0", "600", "0027"]
    assert "readonly" in login.stdout
    coredump = host.check_output("systemd-analyze cat-config systemd/coredump.conf")
    assert "Storage=none" in coredump
    assert "ProcessSizeMax=0" in coredump


@pytest.mark.parametrize(
    ("path", "owner", "group", "mode"),
    [
        ("/etc/shadow", "root", "shadow", 0o640),
        ("/etc/gshadow", "root", "shadow", 0o640),
        ("/etc/crontab", "root", "root", 0o600),
        ("/etc/ssh/sshd_config", "root", "root", 0o600),
        ("/etc/ssh/ssh_host_ed25519_key", "root", "root", 0o600),
    ],
)
def test_sensitive_files_are_restricted(host, path, owner, group, mode):
    f = host.file(path)
    if not f.exists:
        pytest.skip(f"{path} does not exist in this image")
    assert (f.user, f.group, f.mode) == (owner, group, mode)


def test_cron_directories_are_closed_to_other_users(host):
    for name in ("cron.d", "cron.daily", "cron.weekly", "cron.monthly"):
        d = host.file(f"/etc/{name}")
        if d.exists:
            assert d.mode == 0o700, name
    assert host.run("runuser -u deploy -- ls /etc/cron.daily").rc != 0


def test_audit_rules_are_written_and_auditd_does_not_degrade_the_host(host):
    rules = host.file(AUDIT_RULES).content_string.splitlines()
    for rule in (
        "-w /etc/shadow -p wa -k identity",
        "-w /etc/sudoers -p wa -k sudoers",
        "-w /etc/ssh/sshd_config -p wa -k sshd",
        "-w /etc/localtime -p wa -k time-change",
    ):
        assert rule in rules
    # augenrules merged the fragment into the rules auditd loads when it starts.
    assert "-w /etc/gshadow -p wa -k identity" in host.file("/etc/audit/audit.rules").content_string
    assert host.run("auditctl -s").rc != 0  # no audit subsystem in this container
    assert host.run("systemctl is-enabled auditd").stdout.strip() == "disabled"
    assert host.run("systemctl is-failed auditd").rc != 0
    assert host.run("systemctl is-system-running").stdout.strip() == "running"


def test_only_security_updates_install_unattended(host):
    dump = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    patterns = [line for line in dump.splitlines() if line.startswith("Unattended-Upgrade::Origins-Pattern:: ")]
    assert patterns
    assert all("label=Debian-Security" in line for line in patterns)
    periodic = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    assert host.service("unattended-upgrades").is_enabled


def test_a_package_index_update_is_stamped_so_cache_valid_time_works(host):
    stamp = "/var/lib/apt/periodic/update-success-stamp"
    host.run("rm -f %s", stamp)
    assert host.run("apt-get -qq update").rc == 0
    age = host.check_output("echo $(( $(date +%%s) - $(stat -c %%Y %s) ))", stamp)
    assert 0 <= int(age) < 120
    # Ansible's apt module now finds the index fresh: no download, so nothing changes and no new stamp is needed.
    host.run("touch -d '10 minutes ago' %s", stamp)
    before = host.check_output("stat -c %%Y %s", stamp)
    fresh = "update_cache=true cache_valid_time=3600"
    run = _playbook("all", "-m", "ansible.builtin.apt", "-a", fresh, command="ansible")
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"cache_updated": false' in run.stdout, run.stdout
    assert host.check_output("stat -c %%Y %s", stamp) == before


def test_legacy_packages_are_removed(host):
    assert not host.package("inetutils-telnet").is_installed
    assert host.run("command -v telnet").rc != 0


def test_banner_and_tools(host):
    for path in ("/etc/issue", "/etc/issue.net"):
        assert "Authorized access only" in host.file(path).content_string
    for package in ("debsums", "needrestart", "rkhunter", "libpam-tmpdir", "libpam-pwquality"):
        assert host.package(package).is_installed, package
    assert 'CRON_DAILY_RUN="true"' in host.file("/etc/default/rkhunter").content_string
    assert "pam_pwquality.so" in host.file("/etc/pam.d/common-password").content_string
    assert "pam_pwquality" not in host.file("/etc/pam.d/common-auth").content_string


def test_shared_memory_is_noexec(host):
    options = host.check_output("findmnt -no OPTIONS %s", SHM).split(",")
    assert {"nosuid", "nodev", "noexec"} <= set(options)
    fstab = host.file("/etc/fstab").content_string.splitlines()
    assert any(line.split()[:2] == ["tmpfs", SHM] for line in fstab)


def test_aide_reports_a_changed_system_file(host):
    config = host.file("/etc/aide/aide.conf").content_string
    assert "sha512" in config
    assert host.file("/var/lib/aide/aide.db").exists
    # Earlier tests add users (/etc/passwd changes), so the check before the probe need not be clean.
    clean = host.run("aide --check --config /etc/aide/aide.conf")
    assert "/usr/local/bin/aide-probe" not in clean.stdout, clean.stdout + clean.stderr
    # The baseline is taken after the handlers: the merged audit rules they write are not a change.
    assert "/etc/audit/audit.rules" not in clean.stdout, clean.stdout
    host.run_expect([0], "echo '# aide probe' >> /usr/local/bin/aide-probe && chmod 0755 /usr/local/bin/aide-probe")
    try:
        dirty = host.run("aide --check --config /etc/aide/aide.conf")
        # AIDE's exit code is a bit mask; 1 means added files.
        assert dirty.rc & 1, dirty.stdout + dirty.stderr
        assert "/usr/local/bin/aide-probe" in dirty.stdout
    finally:
        host.run("rm -f /usr/local/bin/aide-probe")


def test_sysstat_collects_and_accounting_skip_is_reported(host):
    assert 'ENABLED="true"' in host.file("/etc/default/sysstat").content_string
    assert host.service("sysstat-collect.timer").is_enabled
    assert host.service("sysstat-collect.timer").is_running
    # No CAP_SYS_PACCT in this container: acct is not installed (its service would fail and degrade systemd).
    cap_eff = int(host.check_output("grep ^CapEff: /proc/self/status").split()[1], 16)
    assert not cap_eff & (1 << 20)
    assert not host.package("acct").is_installed


def test_usbguard_blocks_unknown_devices_and_lets_keyboards_in(host):
    conf = host.file("/etc/usbguard/usbguard-daemon.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "root", 0o600)  # the daemon refuses a readable one
    settings = dict(line.split("=", 1) for line in conf.content_string.splitlines() if line and line[0] != "#")
    assert settings["ImplicitPolicyTarget"] == "block"
    for key in ("PresentDevicePolicy", "PresentControllerPolicy", "InsertedDevicePolicy"):
        assert settings[key] == "apply-policy", key
    assert settings["RestoreControllerDeviceState"] == "false"
    assert settings["RuleFile"] == "/etc/usbguard/rules.conf"
    # Only root may allow a device: no access files (Debian's postinst writes one for the plugdev group).
    assert (settings["IPCAllowedUsers"], settings["IPCAllowedGroups"]) == ("root", "root")
    assert "IPCAccessControlFiles" not in settings
    rules = host.file("/etc/usbguard/rules.d/50-locksmith.conf").content_string.splitlines()
    assert [line for line in rules if line and line[0] != "#"] == ["allow with-interface match-all { 03:*:* 09:00:* }"]
    # The daemon parses its configuration and every rule file before it reads the USB bus, and names the first
    # error: here the only one is the bus this container lacks.
    run = host.run("usbguard-daemon -k -c /etc/usbguard/usbguard-daemon.conf")
    errors = [line for line in (run.stdout + run.stderr).splitlines() if "(E)" in line]
    assert run.rc != 0
    assert len(errors) == 1 and errors[0].endswith("loadFiles: /sys/bus/usb/devices: No such file or directory"), errors
    # Without a bus both units are enabled and skipped by their condition, so systemd is not degraded.
    for unit in ("usbguard.service", "usbguard-dbus.service"):
        state = host.check_output("systemctl show -p UnitFileState,ConditionResult,ActiveState %s", unit).split()
        assert sorted(state) == ["ActiveState=inactive", "ConditionResult=no", "UnitFileState=enabled"], unit
    assert host.run("systemctl is-system-running").stdout.strip() == "running"


def test_a_bad_usbguard_rule_is_refused_and_the_rules_stay(host):
    before = host.file("/etc/usbguard/rules.d/50-locksmith.conf").content_string
    run = _playbook(
        "--extra-vars",
        json.dumps({"os_hardening_usbguard_rules": ["allow id 0463:ffff", "allow everything please"]}),
        os.path.join(PROJECT, "molecule", "_shared", "converge.yml"),
    )
    assert run.returncode != 0
    # molecule's ansible.cfg sends failures to stderr (display_failed_stderr).
    out = " ".join((run.stdout + run.stderr).split())
    assert "os_hardening_usbguard_rules holds 'allow everything please', which usbguard-rule-parser refuses" in out
    assert "holds 'allow id 0463:ffff'" not in out  # the good rule passes
    assert host.file("/etc/usbguard/rules.d/50-locksmith.conf").content_string == before


def test_assembler_is_for_root_only(host):
    assembler = host.file("/usr/bin/x86_64-linux-gnu-as")
    if not assembler.exists:
        pytest.skip("no assembler in this image")
    assert assembler.mode == 0o750
    denied = host.run("runuser -u deploy -- /usr/bin/x86_64-linux-gnu-as --version")
    assert denied.rc != 0
    assert "Permission denied" in denied.stderr


def test_lynis_index_rises(host):
    before = json.loads(host.file("/var/lib/locksmith/lynis/before/summary.json").content_string)
    run = _playbook(os.path.join(SCENARIO, "tests", "lynis_after.yml"))
    assert run.returncode == 0, run.stdout + run.stderr
    after = json.loads(host.file("/var/lib/locksmith/lynis/after/summary.json").content_string)
    print(f"Lynis hardening index: before {before['hardening_index']}, after {after['hardening_index']}")
    # Measured +14 (59 -> 73) in this container; most missing points are not applicable here (docs/hardening.md).
    assert after["hardening_index"] >= before["hardening_index"] + 10


def test_lynis_index_with_harden_host_roles(host):
    """harden.yml's os_hardening, ssh_hardening and intrusion_detection, measured against the target of 85."""
    before = json.loads(host.file("/var/lib/locksmith/lynis/before/summary.json").content_string)
    run = _playbook(os.path.join(SCENARIO, "tests", "lynis_harden.yml"))
    assert run.returncode == 0, run.stdout + run.stderr
    after = json.loads(host.file("/var/lib/locksmith/lynis/harden/summary.json").content_string)
    print(
        f"Lynis hardening index with ssh_hardening and intrusion_detection: before {before['hardening_index']}, "
        f"after {after['hardening_index']}"
    )
    suggestions = after["suggestions"]
    gone = ("FINT-4350", "HRDN-7222", "ACCT-9626", "KRNL-5820", "TOOL-5190")
    assert not [s for s in suggestions if s.startswith(gone)]
    # The one SSH-7408 left is Port 22, kept on purpose (docs/hardening.md).
    assert [s for s in suggestions if s.startswith("SSH-7408")] == [
        "SSH-7408: Consider hardening SSH configuration (Port (set 22 to ))"
    ]
    # USB-3000 reads USBGuard's configuration, not the daemon (which has no USB bus to guard here).
    log = host.file("/var/lib/locksmith/lynis/harden/lynis.log").content_string
    for result in ("USBGuard is installed", "ImplicitPolicyTarget = block", "InsertedDevicePolicy = apply-policy"):
        assert f"Result: {result}" in log, result
    # The target. docs/hardening.md lists the points still missing and why each stays.
    assert after["hardening_index"] >= 85
