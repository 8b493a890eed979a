{{/*
One component: its Deployment, HorizontalPodAutoscaler, PodDisruptionBudget and metrics
Service. Every stock component and every custom worker is rendered by this template, from:

  root        the chart's root context ($)
  component   the component's name (workflow-engine, worker-booking, …)
  values      its values (replicas, resources, autoscaling, pdb, env, …), over `defaults`
  image       the image reference
  command     the container command (empty: the image's entrypoint)
  args        the container arguments
  store       whether it uses Redis (mounts the Redis password)
  apiTokens   whether it reads the API tokens (mounts them)
  ports       extra container ports besides `health`
  volumes, volumeMounts  extra volumes (the bridge's services file, …)
*/}}
{{- define "baton.component" -}}
{{- $root := .root -}}
{{- $v := mergeOverwrite (deepCopy ($root.Values.defaults | default dict)) (deepCopy (.values | default dict)) -}}
{{- $name := include "baton.componentName" (dict "root" $root "component" .component) -}}
{{- $selector := include "baton.selectorLabels" (dict "root" $root "component" .component) -}}
{{- $labels := include "baton.labels" (dict "root" $root "component" .component) -}}
{{- $healthPort := include "baton.healthPort" $root | int -}}
{{- $deadline := include "baton.shutdownDeadline" $root | int -}}
{{- $preStop := int (.preStopSleep | default 0) -}}
{{- $dir := include "baton.secretsDir" $root -}}
{{- $pulsarToken := include "baton.pulsarTokenRef" $root | fromYaml -}}
{{- $redisPassword := dict -}}
{{- if .store }}{{ $redisPassword = include "baton.redisPasswordRef" $root | fromYaml }}{{ end -}}
{{- $apiTokens := dict -}}
{{- if .apiTokens }}{{ $apiTokens = include "baton.apiTokensRef" $root | fromYaml }}{{ end -}}
{{- $autoscaling := $v.autoscaling | default dict -}}
{{- if and $autoscaling.enabled (not (or $autoscaling.targetCPUUtilizationPercentage $autoscaling.targetMemoryUtilizationPercentage)) -}}
{{- fail (printf "%s: autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage above 0" .component) -}}
{{- end -}}
{{- if and $autoscaling.enabled (gt (int $autoscaling.minReplicas) (int $autoscaling.maxReplicas)) -}}
{{- fail (printf "%s: autoscaling.minReplicas %v is above maxReplicas %v" .component $autoscaling.minReplicas $autoscaling.maxReplicas) -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
  {{- with $root.Values.commonAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if not $autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: {{ $root.Values.revisionHistoryLimit }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  strategy:
    {{- toYaml $v.updateStrategy | nindent 4 }}
  template:
    metadata:
      labels:
        {{- $labels | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A changed configuration or secret rolls the pods.
        checksum/config: {{ include "baton.toml" $root | sha256sum }}
        checksum/secrets: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "baton.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $v.podSecurityContext | nindent 8 }}
      # The binary drains in-flight work for up to process.shutdown_deadline_secs after
      # SIGTERM, then exits by itself; Kubernetes waits a little longer before SIGKILL.
      terminationGracePeriodSeconds: {{ add $preStop $deadline 5 }}
      containers:
        - name: {{ .component }}
          image: {{ .image | quote }}
          imagePullPolicy: {{ .pullPolicy | default $root.Values.image.pullPolicy }}
          {{- with .command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            - name: BATON_CONFIG
              value: /etc/baton/baton.toml
            {{- with $v.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with $v.envFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: health
              containerPort: {{ $healthPort }}
              protocol: TCP
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .containerPort }}
              protocol: TCP
            {{- end }}
          # /health answers while the process lives, also while it drains; /ready while it
          # consumes and its broker and store answer.
          startupProbe:
            httpGet:
              path: /health
              port: health
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet:
              path: /health
              port: health
            periodSeconds: {{ $v.probes.livenessPeriodSeconds }}
            timeoutSeconds: {{ $v.probes.timeoutSeconds }}
            failureThreshold: {{ $v.probes.livenessFailureThreshold }}
          readinessProbe:
            httpGet:
              path: /ready
              port: health
            periodSeconds: {{ $v.probes.readinessPeriodSeconds }}
            timeoutSeconds: {{ $v.probes.timeoutSeconds }}
            failureThreshold: {{ $v.probes.readinessFailureThreshold }}
          {{- if $preStop }}
          lifecycle:
            # Endpoints drop a terminating pod a moment after SIGTERM; requests sent in that
            # moment still find it serving.
            preStop:
              sleep:
                seconds: {{ $preStop }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $v.securityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/baton
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- if $pulsarToken }}
            - name: pulsar-token
              mountPath: {{ $dir }}/pulsar-token
              readOnly: true
            {{- end }}
            {{- if $redisPassword }}
            - name: redis-password
              mountPath: {{ $dir }}/redis-password
              readOnly: true
            {{- end }}
            {{- if $apiTokens }}
            - name: api-tokens
              mountPath: {{ $dir }}/api-tokens
              readOnly: true
            {{- end }}
            {{- with .volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ include "baton.fullname" $root }}-config
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if $pulsarToken }}
        - name: pulsar-token
          secret:
            secretName: {{ $pulsarToken.name }}
            items:
              - key: {{ $pulsarToken.key }}
                path: token
        {{- end }}
        {{- if $redisPassword }}
        - name: redis-password
          secret:
            secretName: {{ $redisPassword.name }}
            items:
              - key: {{ $redisPassword.key }}
                path: password
        {{- end }}
        {{- if $apiTokens }}
        - name: api-tokens
          secret:
            secretName: {{ $apiTokens.name }}
            items:
              - key: {{ $apiTokens.key }}
                path: tokens
        {{- end }}
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $v.topologySpread }}
      # Replicas spread over nodes where they can be, so one node's loss takes few of them.
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- $selector | nindent 14 }}
      {{- end }}
{{- if $autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $autoscaling.minReplicas }}
  maxReplicas: {{ $autoscaling.maxReplicas }}
  metrics:
    {{- with $autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
    {{- with $autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
  {{- with $autoscaling.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if ($v.pdb | default dict).enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  {{- if $v.pdb.minAvailable }}
  minAvailable: {{ $v.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $v.pdb.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
{{- end }}
{{- if $root.Values.metrics.service.enabled }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-metrics
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
    baton/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- $selector | nindent 4 }}
  ports:
    - name: metrics
      port: {{ $healthPort }}
      targetPort: health
      protocol: TCP
{{- end }}
{{- end -}}
