#!/usr/bin/env pwsh
# Convenience wrapper; every step is a plain dotnet (or bash) command, shown here so nothing depends on PowerShell.
param([ValidateSet('build', 'test', 'bench', 'run')][string]$Target = 'build', [Parameter(ValueFromRemainingArguments)][string[]]$Rest)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
switch ($Target) {
  'build' { dotnet build ActorCache.sln -c Release }
  'test'  { dotnet test ActorCache.sln }
  'bench' {
    if (Test-Path tests/bench/compare.sh) { bash tests/bench/compare.sh @Rest }
    else { Write-Error 'no benchmark script yet (tests/bench/compare.sh arrives with the performance work)' }
  }
  'run'   { dotnet run --project src/ActorCache -c Release -- serve @Rest }
}
exit $LASTEXITCODE
