{{/*
The relay's pod template, shared by the StatefulSet (sqlite mode) and the Deployment
(postgresql mode). What differs by mode: the database URL (a file on the volume, or a
Secret), RELAY_SECRET_KEY (optional, or required so every replica shares it), the volume
mount, and, for several replicas, a preStop sleep and a spread across nodes.
*/}}
{{- define "opsgenie-dx-relay.podTemplate" -}}
{{- $sqlite := include "opsgenie-dx-relay.sqlite" . }}
{{- $secretName := include "opsgenie-dx-relay.secretName" . }}
{{- /* Keys a user-made Secret may lack, and that the chart's Secret omits when empty. In
     postgresql mode every replica needs the same RELAY_SECRET_KEY, so it is required. */}}
{{- $secretEnv := list
  (list "RELAY_DX_TOKEN" true)
  (list "RELAY_WEBHOOK_TOKENS" true)
  (list "RELAY_API_KEY" true)
  (list "RELAY_APP_KEY" true)
  (list "RELAY_READONLY_APP_KEY" true)
  (list "RELAY_SECRET_KEY" (eq $sqlite "true")) }}
{{- $preStop := ternary 0 (int .Values.deployment.preStopSleepSeconds) (eq $sqlite "true") -}}
metadata:
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- if not $sqlite }}
    checksum/database: {{ include (print $.Template.BasePath "/secret-database.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "opsgenie-dx-relay.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "opsgenie-dx-relay.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automount }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . | quote }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- /* The relay drains for shutdownDrainSeconds after the preStop sleep (none in sqlite
       mode); leave it 10 s more before SIGKILL. */}}
  terminationGracePeriodSeconds: {{ add .Values.shutdownDrainSeconds 10 $preStop }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: relay
      image: "{{ .Values.image.repository }}:{{ include "opsgenie-dx-relay.imageTag" . }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPort }}
          protocol: TCP
      env:
        - name: RELAY_HOST
          value: "0.0.0.0"
        - name: RELAY_PORT
          value: {{ .Values.containerPort | quote }}
        - name: RELAY_DATABASE_URL
          {{- if $sqlite }}
          value: {{ include "opsgenie-dx-relay.sqliteUrl" . | quote }}
          {{- else }}
          valueFrom:
            secretKeyRef:
              name: {{ include "opsgenie-dx-relay.databaseSecretName" . }}
              key: {{ .Values.database.postgresql.urlKey }}
          {{- end }}
        - name: RELAY_DX_BASE_URL
          value: {{ .Values.dx.baseUrl | quote }}
        - name: RELAY_OPSGENIE_WEB_URL
          value: {{ .Values.opsgenie.webUrl | quote }}
        - name: RELAY_LOG_FORMAT
          value: {{ .Values.logFormat | quote }}
        - name: RELAY_SHUTDOWN_DEADLINE
          value: {{ .Values.shutdownDrainSeconds | quote }}
        {{- if .Values.rules }}
        - name: RELAY_CONFIG
          value: {{ printf "%s/rules.yaml" (include "opsgenie-dx-relay.rulesDir" .) | quote }}
        {{- end }}
        {{- range $secretEnv }}
        - name: {{ index . 0 }}
          valueFrom:
            secretKeyRef:
              name: {{ $secretName }}
              key: {{ index . 0 }}
              optional: {{ index . 1 }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if gt $preStop 0 }}
      {{- /* Kubernetes takes a terminating pod out of the Service's endpoints while it
           sends SIGTERM; the ingress learns of it a little later. Until then the pod
           keeps taking webhooks, so none meets a closed port. */}}
      lifecycle:
        preStop:
          exec:
            command: ["sleep", "{{ $preStop }}"]
      {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if $sqlite }}
        - name: data
          mountPath: {{ .Values.persistence.mountPath }}
        {{- end }}
        {{- if .Values.rules }}
        - name: rules
          mountPath: {{ include "opsgenie-dx-relay.rulesDir" . }}
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
    {{- if .Values.rules }}
    - name: rules
      configMap:
        name: {{ include "opsgenie-dx-relay.fullname" . }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (include "opsgenie-dx-relay.topologySpread" . | fromYamlArray) }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
topologySpreadConstraints: the user's list; else, in postgresql mode, replicas spread across
nodes and then zones, softly (ScheduleAnyway), so one node or zone lost takes at most its
share of them and a small cluster still schedules them all. pod-template-hash limits the
count to the Deployment's current ReplicaSet, so a rollout's old pods do not skew it.
*/}}
{{- define "opsgenie-dx-relay.topologySpread" -}}
{{- if not (kindIs "invalid" .Values.topologySpreadConstraints) }}
{{- toYaml .Values.topologySpreadConstraints }}
{{- else if not (include "opsgenie-dx-relay.sqlite" .) }}
{{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
- maxSkew: 1
  topologyKey: {{ . }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "opsgenie-dx-relay.selectorLabels" $ | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}
{{- else }}
[]
{{- end }}
{{- end }}
