{{/*
Names, labels, the shared configuration and the one Deployment shape every component uses.
*/}}

{{- define "baton.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "baton.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: dict "root" $ "component" "workflow-engine". */}}
{{- define "baton.componentName" -}}
{{- printf "%s-%s" (include "baton.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "baton.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component: dict "root" $ "component" NAME. */}}
{{- define "baton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "baton.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object's labels: dict "root" $ "component" NAME ("" for release-wide objects). */}}
{{- define "baton.labels" -}}
helm.sh/chart: {{ include "baton.chart" .root }}
app.kubernetes.io/name: {{ include "baton.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: baton
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "baton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "baton.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
A secret the chart reads: dict "root" $ "secret" VALUES "inlineKey" KEY "what" SETTING.
Renders "name: …\nkey: …" when the secret is set (an existing Secret, or a value the chart
stores in its own Secret under inlineKey), nothing otherwise.
*/}}
{{- define "baton.secretRef" -}}
{{- $s := .secret | default dict -}}
{{- $inline := or $s.value $s.values -}}
{{- if and $s.existingSecret $inline -}}
{{- fail (printf "%s: set existingSecret or a value, not both" .what) -}}
{{- end -}}
{{- if $s.existingSecret -}}
name: {{ $s.existingSecret }}
key: {{ required (printf "%s.key: the key of %s that holds it" .what $s.existingSecret) $s.key }}
{{- else if $inline -}}
name: {{ include "baton.fullname" .root }}-secrets
key: {{ .inlineKey }}
{{- end -}}
{{- end -}}

{{- define "baton.pulsarTokenRef" -}}
{{- if eq .Values.transport.kind "pulsar" -}}
{{- include "baton.secretRef" (dict "root" . "secret" .Values.transport.pulsar.token "inlineKey" "pulsar-token" "what" "transport.pulsar.token") -}}
{{- end -}}
{{- end -}}

{{- define "baton.redisPasswordRef" -}}
{{- include "baton.secretRef" (dict "root" . "secret" .Values.redis.password "inlineKey" "redis-password" "what" "redis.password") -}}
{{- end -}}

{{- define "baton.apiTokensRef" -}}
{{- include "baton.secretRef" (dict "root" . "secret" .Values.api.tokens "inlineKey" "api-tokens" "what" "api.tokens") -}}
{{- end -}}

{{/* Where secrets are mounted; the configuration names these files. */}}
{{- define "baton.secretsDir" -}}/var/run/secrets/baton{{- end -}}

{{/*
The shared Baton configuration as a YAML map: what the values set, then `config:` on top
(any setting of baton.toml, same keys). Rendered as TOML into the ConfigMap.
*/}}
{{- define "baton.config" -}}
{{- $v := .Values -}}
{{- $dir := include "baton.secretsDir" . -}}
{{- if not (has $v.transport.kind (list "pulsar" "kafka")) -}}
{{- fail (printf "transport.kind `%s`: use pulsar or kafka" $v.transport.kind) -}}
{{- end -}}
{{- $transport := dict "partitions" $v.transport.partitions -}}
{{- if eq $v.transport.kind "pulsar" -}}
{{- $p := $v.transport.pulsar -}}
{{- $_ := set $transport "url" (required "transport.pulsar.url: the broker, e.g. pulsar://pulsar-broker.pulsar:6650" $p.url) -}}
{{- $pulsar := dict "tenant" $p.tenant "namespace" $p.namespace -}}
{{- with $p.adminUrl }}{{ $_ := set $pulsar "admin_url" . }}{{ end -}}
{{- if include "baton.pulsarTokenRef" . -}}
{{- $_ := set $pulsar "token_file" (printf "%s/pulsar-token/token" $dir) -}}
{{- end -}}
{{- $_ := set $transport "pulsar" $pulsar -}}
{{- else -}}
{{- $k := $v.transport.kafka -}}
{{- $servers := required "transport.kafka.bootstrapServers: host:port[,host:port]" $k.bootstrapServers -}}
{{- $_ := set $transport "url" (printf "kafka://%s" $servers) -}}
{{- $kafka := dict "replication_factor" $k.replicationFactor -}}
{{- with $k.namespace }}{{ $_ := set $kafka "namespace" . }}{{ end -}}
{{- $_ := set $transport "kafka" $kafka -}}
{{- end -}}
{{- $storage := dict "url" (required "redis.url: e.g. redis://redis-master.redis:6379/0 (rediss:// for TLS)" $v.redis.url) "prefix" $v.redis.prefix -}}
{{- with $v.redis.username }}{{ $_ := set $storage "username" . }}{{ end -}}
{{- if include "baton.redisPasswordRef" . -}}
{{- $_ := set $storage "password_file" (printf "%s/redis-password/password" $dir) -}}
{{- end -}}
{{- $api := dict "listen" (printf "0.0.0.0:%v" $v.api.port) -}}
{{- if include "baton.apiTokensRef" . -}}
{{- $_ := set $api "tokens_file" (printf "%s/api-tokens/tokens" $dir) -}}
{{- end -}}
{{- $process := dict "health_listen" (printf "0.0.0.0:%v" $v.process.healthPort) "shutdown_deadline_secs" $v.process.shutdownDeadlineSeconds "log" $v.process.log -}}
{{- $telemetry := dict "sample_ratio" $v.telemetry.sampleRatio -}}
{{- with $v.telemetry.otlpEndpoint }}{{ $_ := set $telemetry "otlp_endpoint" . }}{{ end -}}
{{- $config := dict "transport" $transport "storage" $storage "api" $api "process" $process "telemetry" $telemetry -}}
{{- $_ := set $config "engine" (dict "workflows" $v.workflows) -}}
{{- $_ := set $config "tag_engine" (dict "workflows" $v.workflows "services" $v.services) -}}
{{- $config = mergeOverwrite $config (deepCopy ($v.config | default dict)) -}}
{{- if and $v.workflowEngine.enabled (empty $config.engine.workflows) -}}
{{- fail "workflows: name the workflows your workers run (e.g. workflows: [Booking]); the engine consumes their topics" -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* A TOML key: bare when it can be, quoted otherwise. */}}
{{- define "baton.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/*
A TOML value. Values files give every number as a float, and Baton's integer settings refuse
`4.0`, so whole numbers are written as integers (a float setting reads `1` as 1.0).
*/}}
{{- define "baton.tomlValue" -}}
{{- if kindIs "string" . -}}{{ toJson . }}
{{- else if kindIs "bool" . -}}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}{{ if eq (floor .) (float64 .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) -}}{{ . }}
{{- else if kindIs "slice" . -}}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "baton.tomlValue" $e }}{{ end }}]
{{- else if kindIs "map" . -}}{ {{- range $i, $k := keys . | sortAlpha }}{{ if $i }},{{ end }} {{ include "baton.tomlKey" $k }} = {{ include "baton.tomlValue" (index $ $k) }}{{ end }} }
{{- else -}}{{ fail (printf "config: a %s value cannot be written as TOML" (kindOf .)) }}
{{- end -}}
{{- end -}}

{{/* A TOML table and its sub-tables: dict "path" "a.b" "table" MAP. Null values are left out. */}}
{{- define "baton.tomlTable" -}}
{{- $table := .table -}}
{{- $path := .path -}}
{{- range $k := keys $table | sortAlpha }}
{{- $val := index $table $k }}
{{- if and (not (kindIs "map" $val)) (not (kindIs "invalid" $val)) }}
{{ include "baton.tomlKey" $k }} = {{ include "baton.tomlValue" $val }}
{{- end }}
{{- end }}
{{- range $k := keys $table | sortAlpha }}
{{- $val := index $table $k }}
{{- if kindIs "map" $val }}
{{- $sub := include "baton.tomlKey" $k }}
{{- if $path }}{{ $sub = printf "%s.%s" $path $sub }}{{ end }}

[{{ $sub }}]
{{- include "baton.tomlTable" (dict "path" $sub "table" $val) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "baton.toml" -}}
# The shared Baton configuration, rendered by the Helm chart from its values.
{{- include "baton.tomlTable" (dict "path" "" "table" (include "baton.config" . | fromYaml)) }}
{{ end -}}

{{/* The shutdown deadline the binaries use (after `config:` overrides). */}}
{{- define "baton.shutdownDeadline" -}}
{{- $config := include "baton.config" . | fromYaml -}}
{{- int64 (dig "process" "shutdown_deadline_secs" 30 $config) -}}
{{- end -}}

{{/* The health port the binaries use (after `config:` overrides). */}}
{{- define "baton.healthPort" -}}
{{- $config := include "baton.config" . | fromYaml -}}
{{- $listen := dig "process" "health_listen" "" $config -}}
{{- $listen | splitList ":" | last -}}
{{- end -}}
