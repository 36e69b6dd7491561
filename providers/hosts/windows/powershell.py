"""The PowerShell recon runs on Windows hosts: one fixed prelude of small functions, and scripts that
are nothing but calls of those functions with quoted values.

Every script is PRELUDE, a line `# recon body`, then one call per line: `Recon-Name 'value' …`. A
value is only ever a single-quoted PowerShell string (`quote`), in which nothing expands; so paths
and names with spaces, quotes or `$` are data, never code. The user's own PowerShell (a command's
`run` and `unless`) runs in a child powershell.exe, so that its `exit` ends only that child. Each
call prints one line of compressed JSON: facts `{"i": N, …}`, steps `{"s": N, "ok": true}` or, on
failure, `{"s": N, "ok": false, "error": "…"}`, after which the script exits 1.

The test peer (tests/peers/winrm_host.py) emulates exactly these functions from its own copy of this
prelude (tests/peers/ps_prelude.ps1) and refuses a script with any other: a change here fails the WinRM
tests until that copy and its emulation change with it. Keep the functions few and small.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator

# PowerShell treats these four as single quotes too; each is doubled like the ASCII one.
_QUOTES = "'\u2018\u2019\u201a\u201b"

PRELUDE = r"""$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Recon-Out($o) { [Console]::Out.WriteLine((ConvertTo-Json -Compress -Depth 4 $o)) }
function Recon-Fail($s, $e) { Recon-Out @{s = [int]$s; ok = $false; error = "$e"}; exit 1 }
function Recon-Hash($p) { (Get-FileHash -LiteralPath $p -Algorithm SHA256).Hash.ToLower() }
function Recon-FileFact($i, $p, $want = '', $max = 0) {
  $o = @{i = [int]$i; exists = (Test-Path -LiteralPath $p); backup = (Test-Path -LiteralPath "$p.recon-bak")}
  if ($o.exists) { $it = Get-Item -LiteralPath $p -Force; $o.dir = $it.PSIsContainer
    if (-not $o.dir) { $o.size = $it.Length; $o.sha256 = Recon-Hash $p
      if ($want -ne '' -and $o.sha256 -ne $want -and $o.size -le [int64]$max) {
        $o.text = [Convert]::ToBase64String([IO.File]::ReadAllBytes($p)) } } }
  Recon-Out $o }
function Recon-DirFact($i, $p) {
  $o = @{i = [int]$i; exists = (Test-Path -LiteralPath $p)}
  if ($o.exists) { $o.dir = (Get-Item -LiteralPath $p -Force).PSIsContainer }
  Recon-Out $o }
function Recon-ServiceFact($i, $n) {
  $v = Get-Service -Name $n -ErrorAction SilentlyContinue | Where-Object { $_.Name -eq $n }
  if ($null -eq $v) { Recon-Out @{i = [int]$i; exists = $false}; return }
  Recon-Out @{i = [int]$i; exists = $true; status = "$($v.Status)"; startup = "$($v.StartType)"} }
function Recon-ProcessFact($i, $n) {
  Recon-Out @{i = [int]$i; count = @(Get-Process -Name $n -ErrorAction SilentlyContinue).Count} }
function Recon-Child($b) {
  $out = & powershell.exe -NoProfile -NonInteractive -EncodedCommand $b 2>&1 | Out-String
  @([int]$LASTEXITCODE, $out) }
function Recon-GuardFact($i, $creates, $unless) {
  $o = @{i = [int]$i; creates = ($creates -ne '' -and (Test-Path -LiteralPath $creates))}
  if ($unless -ne '') { $o.unless = (Recon-Child $unless)[0] }
  Recon-Out $o }
function Recon-Begin($p) { New-Item -ItemType Directory -Force -Path (Split-Path -LiteralPath $p) | Out-Null
  [IO.File]::WriteAllBytes("$p.recon-new", [byte[]]@()) }
function Recon-Chunk($p, $b) { $f = [IO.File]::Open("$p.recon-new", 'Append')
  try { $d = [Convert]::FromBase64String($b); $f.Write($d, 0, $d.Length) } finally { $f.Close() } }
function Recon-Wait($n, $want, $t) { (Get-Service -Name $n).WaitForStatus($want, [TimeSpan]::FromSeconds([double]$t)) }
function Recon-Services($s, $list, $want, $t) {
  foreach ($n in ($list -split '/' | Where-Object { $_ })) {
    try { if ($want -eq 'Running') { Start-Service -Name $n } else { Stop-Service -Name $n -Force }
      Recon-Wait $n $want $t } catch { Recon-Fail $s "service ${n}: $_" } } }
function Recon-PutFile($s, $p, $sha, $list, $verify, $t) {
  if ((Recon-Hash "$p.recon-new") -ne $sha) { Recon-Fail $s "the file arrived corrupted (sha256 differs)" }
  Recon-Services $s $list 'Stopped' $t
  try { if (Test-Path -LiteralPath $p) { Copy-Item -LiteralPath $p -Destination "$p.recon-bak" -Force }
    Move-Item -LiteralPath "$p.recon-new" -Destination $p -Force } catch { Recon-Fail $s "replacing ${p}: $_" }
  Recon-Services $s $list 'Running' $t
  if ($list -ne '') { Start-Sleep -Milliseconds ([int](1000 * [double]$verify))
    foreach ($n in ($list -split '/' | Where-Object { $_ })) {
      if ("$((Get-Service -Name $n).Status)" -ne 'Running') { Recon-Fail $s "service $n stopped after it started" } } }
  Recon-Out @{s = [int]$s; ok = $true} }
function Recon-Dir($s, $p) { try { New-Item -ItemType Directory -Force -Path $p | Out-Null } catch { Recon-Fail $s $_ }
  Recon-Out @{s = [int]$s; ok = $true} }
function Recon-Remove($s, $p) {
  try { if (Test-Path -LiteralPath $p -PathType Leaf) { Move-Item -LiteralPath $p -Destination "$p.recon-bak" -Force }
    elseif (Test-Path -LiteralPath $p) { Remove-Item -LiteralPath $p -Recurse -Force } } catch { Recon-Fail $s $_ }
  Recon-Out @{s = [int]$s; ok = $true} }
function Recon-Service($s, $n, $want, $startup, $t) {
  try { if ($startup -ne '') { Set-Service -Name $n -StartupType $startup }
    if ($want -eq 'Running') { Start-Service -Name $n; Recon-Wait $n 'Running' $t }
    elseif ($want -eq 'Stopped') { Stop-Service -Name $n -Force; Recon-Wait $n 'Stopped' $t }
    elseif ($want -eq 'Restart') { Restart-Service -Name $n -Force; Recon-Wait $n 'Running' $t } }
  catch { Recon-Fail $s "service ${n}: $_" }
  Recon-Out @{s = [int]$s; ok = $true} }
function Recon-StopProcess($s, $n, $t) {
  try { Get-Process -Name $n -ErrorAction SilentlyContinue | Stop-Process -Force
    $end = (Get-Date).AddSeconds([double]$t)
    while (@(Get-Process -Name $n -ErrorAction SilentlyContinue).Count -gt 0) {
      if ((Get-Date) -gt $end) { throw "still running after $t s" }; Start-Sleep -Milliseconds 100 } }
  catch { Recon-Fail $s "process ${n}: $_" }
  Recon-Out @{s = [int]$s; ok = $true} }
function Recon-Run($s, $b) {
  $r = Recon-Child $b
  if ($r[0] -ne 0) { Recon-Fail $s "exit $($r[0]): $($r[1])" }
  Recon-Out @{s = [int]$s; ok = $true} }
function Recon-UndoFile($s, $p, $list, $t) {
  try { foreach ($n in ($list -split '/' | Where-Object { $_ })) {
      Stop-Service -Name $n -Force; Recon-Wait $n 'Stopped' $t }
    if (Test-Path -LiteralPath "$p.recon-bak") { Move-Item -LiteralPath "$p.recon-bak" -Destination $p -Force }
    elseif (Test-Path -LiteralPath $p) { Remove-Item -LiteralPath $p -Force }
    Remove-Item -LiteralPath "$p.recon-new" -Force -ErrorAction SilentlyContinue
    foreach ($n in ($list -split '/' | Where-Object { $_ })) { Start-Service -Name $n; Recon-Wait $n 'Running' $t } }
  catch { Recon-Fail $s $_ }
  Recon-Out @{s = [int]$s; ok = $true} }
function Recon-MsiFact($i, $code) {
  $keys = @("HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\$code",
            "HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\$code")
  $found = $keys | Where-Object { Test-Path -LiteralPath $_ } | Select-Object -First 1
  $o = @{i = [int]$i; installed = ($null -ne $found)}
  if ($found) { $o.version = "$((Get-ItemProperty -LiteralPath $found).DisplayVersion)" }
  Recon-Out $o }
function Recon-Stage($s, $p, $sha) {
  if ((Recon-Hash "$p.recon-new") -ne $sha) { Recon-Fail $s "the file arrived corrupted (sha256 differs)" }
  Move-Item -LiteralPath "$p.recon-new" -Destination $p -Force }
function Recon-Msi($s, $verb, $p, $code) {
  $a = if ($verb -eq 'install') { @('/i', "`"$p`"", '/qn', '/norestart') } else { @('/x', $code, '/qn', '/norestart') }
  $r = Start-Process -FilePath msiexec.exe -ArgumentList $a -Wait -PassThru
  if ($r.ExitCode -ne 0 -and $r.ExitCode -ne 3010) { Recon-Fail $s "msiexec $verb exited $($r.ExitCode)" }
  Recon-Out @{s = [int]$s; ok = $true} }
function Recon-ServiceLog($n, $tail, $since) {
  $v = Get-Service -Name $n | Where-Object { $_.Name -eq $n }
  if ($null -eq $v) { throw "Cannot find any service with service name '$n'." }
  $f = @{LogName = @('Application', 'System'); ProviderName = @($n, 'Service Control Manager')}
  if ([int]$since -gt 0) { $f.StartTime = (Get-Date).AddSeconds(-[int]$since) }
  $e = @(Get-WinEvent -FilterHashtable $f -ErrorAction SilentlyContinue | Where-Object {
    $_.ProviderName -eq $n -or $_.Message -like "*$($v.DisplayName)*" } | Select-Object -First ([int]$tail))
  [array]::Reverse($e)
  foreach ($x in $e) { Recon-Out @{t = $x.TimeCreated.ToString('o'); m = "$($x.Message)"} } }
function Recon-Ok($s) { Recon-Out @{s = [int]$s; ok = $true} }
function Recon-Clean($p) { Remove-Item -LiteralPath "$p.recon-bak" -Force -ErrorAction SilentlyContinue }
"""
BODY = "# recon body"
PRELUDE_DIGEST = hashlib.sha256(PRELUDE.encode()).hexdigest()

# How powershell.exe is started: it reads the script from standard input (WS-Man Send messages, so
# its size is not bound by the 8 KB command line) and runs it as one script block.
BOOTSTRAP = ("$l = [Collections.Generic.List[string]]::new(); foreach ($x in $input) { $l.Add($x) }; "
             ". ([ScriptBlock]::Create($l -join \"`n\"))")
ENCODED_BOOTSTRAP = base64.b64encode(BOOTSTRAP.encode("utf-16-le")).decode()
COMMAND = ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand", ENCODED_BOOTSTRAP]


def quote(value: str) -> str:
    """One PowerShell single-quoted string: nothing inside it expands ($, backtick, double quotes)."""
    out = "".join(ch * 2 if ch in _QUOTES else ch for ch in value)
    return f"'{out}'"


def call(name: str, *values: object) -> str:
    return " ".join([name, *(quote(str(v)) for v in values)])


def script(calls: list[str]) -> str:
    return PRELUDE + BODY + "\n" + "\n".join(calls) + "\n"


def streamed_script(calls: Iterable[str]) -> Iterator[str]:
    """The same script as `script`, made a call at a time as it is sent (memory bounded by a call)."""
    yield PRELUDE + BODY + "\n"
    for c in calls:
        yield c + "\n"


def encoded(text: str) -> str:
    """A user's command (`run`, `unless`) for a child powershell.exe -EncodedCommand (base64 of UTF-16LE):
    its `exit N` ends that child, never recon's script."""
    return base64.b64encode(text.encode("utf-16-le")).decode()
