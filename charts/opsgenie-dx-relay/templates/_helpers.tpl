{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "opsgenie-dx-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. Truncated at 63 characters (DNS label limit); the
release name alone when it already contains the chart name.
*/}}
{{- define "opsgenie-dx-relay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "opsgenie-dx-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "opsgenie-dx-relay.labels" -}}
helm.sh/chart: {{ include "opsgenie-dx-relay.chart" . }}
{{ include "opsgenie-dx-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels selecting the relay's pods. Never change them: a StatefulSet's selector is immutable.
*/}}
{{- define "opsgenie-dx-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "opsgenie-dx-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the pod runs as.
*/}}
{{- define "opsgenie-dx-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "opsgenie-dx-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret the relay's credentials come from: the user's, or the chart's own.
*/}}
{{- define "opsgenie-dx-relay.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "opsgenie-dx-relay.fullname" . }}
{{- end }}
{{- end }}

{{/*
Image tag: image.tag, else the chart's appVersion.
*/}}
{{- define "opsgenie-dx-relay.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Directory and file of the mapping rules inside the container.
*/}}
{{- define "opsgenie-dx-relay.rulesDir" -}}
/etc/opsgenie-dx-relay
{{- end }}

{{/*
Whether the relay runs on the embedded SQLite database (a PVC, one replica).
*/}}
{{- define "opsgenie-dx-relay.sqlite" -}}
{{- if eq .Values.database.mode "sqlite" }}true{{ end }}
{{- end }}

{{/*
Pods asked for: replicaCount, else 1 in sqlite mode and 2 in postgresql mode.
*/}}
{{- define "opsgenie-dx-relay.replicas" -}}
{{- if not (kindIs "invalid" .Values.replicaCount) }}
{{- int .Values.replicaCount }}
{{- else if include "opsgenie-dx-relay.sqlite" . }}1
{{- else }}2
{{- end }}
{{- end }}

{{/*
The fewest pods there may be: the autoscaler's floor when it is on, else the replicas.
*/}}
{{- define "opsgenie-dx-relay.minReplicas" -}}
{{- if and .Values.autoscaling.enabled (not (include "opsgenie-dx-relay.sqlite" .)) }}
{{- int .Values.autoscaling.minReplicas }}
{{- else }}
{{- include "opsgenie-dx-relay.replicas" . }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the PostgreSQL URL: the user's, or the chart's own.
*/}}
{{- define "opsgenie-dx-relay.databaseSecretName" -}}
{{- if .Values.database.postgresql.existingSecret }}
{{- .Values.database.postgresql.existingSecret }}
{{- else }}
{{- printf "%s-database" (include "opsgenie-dx-relay.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/*
RELAY_DATABASE_URL in sqlite mode: four slashes for an absolute path.
*/}}
{{- define "opsgenie-dx-relay.sqliteUrl" -}}
{{- printf "sqlite:///%s/relay.db" (trimSuffix "/" .Values.persistence.mountPath) }}
{{- end }}

{{/*
Cross-field checks the schema cannot express clearly; included by statefulset.yaml,
so a bad combination fails the install with a message saying what to change.
*/}}
{{- define "opsgenie-dx-relay.validate" -}}
{{- $replicas := int (include "opsgenie-dx-relay.replicas" .) }}
{{- if and (include "opsgenie-dx-relay.sqlite" .) (ne $replicas 1) }}
{{- fail (printf "database.mode=sqlite runs exactly one replica (SQLite has one writer), got replicaCount=%d: set replicaCount: 1, or use database.mode: postgresql" $replicas) }}
{{- end }}
{{- if and (include "opsgenie-dx-relay.sqlite" .) .Values.autoscaling.enabled }}
{{- fail "autoscaling.enabled needs database.mode: postgresql: SQLite has one writer, so the relay cannot scale out" }}
{{- end }}
{{- with .Values.podDisruptionBudget }}
{{- if and .enabled (include "opsgenie-dx-relay.sqlite" $) }}
{{- $min := toString .minAvailable }}
{{- $max := toString .maxUnavailable }}
{{- if or (and (not (kindIs "invalid" .minAvailable)) (not (has $min (list "0" "0%")))) (has $max (list "0" "0%")) }}
{{- fail "podDisruptionBudget: with one replica (database.mode=sqlite) it must allow that pod to go (minAvailable null or 0, maxUnavailable at least 1), or every node drain blocks forever" }}
{{- end }}
{{- end }}
{{- end }}
{{- if not (include "opsgenie-dx-relay.sqlite" .) }}
{{- with .Values.database.postgresql }}
{{- if not (or .existingSecret .url) }}
{{- fail "database.mode=postgresql needs the database URL: database.postgresql.url (the chart keeps it in a Secret) or database.postgresql.existingSecret (a Secret of yours holding it under database.postgresql.urlKey)" }}
{{- end }}
{{- end }}
{{- if not (or .Values.secrets.existingSecret .Values.secrets.secretKey) }}
{{- fail "database.mode=postgresql needs secrets.secretKey (or secrets.existingSecret with RELAY_SECRET_KEY): every replica must share the key that encrypts stored Opsgenie API keys" }}
{{- end }}
{{- with .Values.autoscaling }}
{{- if and .enabled (lt (int .maxReplicas) (int .minReplicas)) }}
{{- fail (printf "autoscaling.maxReplicas (%d) is below autoscaling.minReplicas (%d)" (int .maxReplicas) (int .minReplicas)) }}
{{- end }}
{{- end }}
{{- $floor := int (include "opsgenie-dx-relay.minReplicas" .) }}
{{- with .Values.podDisruptionBudget }}
{{- $all := or (and (kindIs "float64" .minAvailable) (ge (int .minAvailable) $floor)) (eq (toString .minAvailable) "100%") }}
{{- $none := and (kindIs "invalid" .minAvailable) (has (toString .maxUnavailable) (list "0" "0%")) }}
{{- if and (include "opsgenie-dx-relay.pdbEnabled" $) (or $all $none) }}
{{- fail (printf "podDisruptionBudget: with %d replicas it leaves no pod to evict (minAvailable %v, maxUnavailable %v), so every node drain blocks forever: lower minAvailable, or raise maxUnavailable" $floor .minAvailable .maxUnavailable) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Whether to render the PodDisruptionBudget: podDisruptionBudget.enabled; left null, only
in postgresql mode with more than one replica (a budget on a single pod blocks drains).
*/}}
{{- define "opsgenie-dx-relay.pdbEnabled" -}}
{{- $enabled := .Values.podDisruptionBudget.enabled }}
{{- if kindIs "invalid" $enabled }}
{{- if and (not (include "opsgenie-dx-relay.sqlite" .)) (gt (int (include "opsgenie-dx-relay.minReplicas" .)) 1) }}true{{ end }}
{{- else if $enabled }}true
{{- end }}
{{- end }}
