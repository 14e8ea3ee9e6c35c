{{/* Chart name, truncated to 63 characters. */}}
{{- define "cne.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or <release> when it already contains the chart name. */}}
{{- define "cne.fullname" -}}
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

{{/* Namespace of the namespaced objects. */}}
{{- define "cne.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* Labels for pod selection; never change them after a release (DaemonSet selectors are immutable). */}}
{{- define "cne.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cne.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "cne.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cne.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cilium-node-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cne.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cne.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from (list $ .Values.image defaultTag): repository:tag or repository@digest, the
     registry host of repository replaced by global.imageRegistry when set (a first path component with a "."
     or ":", or "localhost", is a registry host, as Docker reads references). */}}
{{- define "cne.imageRef" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- $repository := $image.repository }}
{{- $registry := (($root.Values.global | default dict).imageRegistry) | default "" }}
{{- if $registry }}
{{- $first := first (splitList "/" $repository) }}
{{- if and (gt (len (splitList "/" $repository)) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) }}
{{- $repository = join "/" (rest (splitList "/" $repository)) }}
{{- end }}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository }}
{{- end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository ($image.tag | default (index . 2)) }}
{{- end }}
{{- end }}

{{/* The exporter's image. */}}
{{- define "cne.image" -}}
{{- include "cne.imageRef" (list . .Values.image .Chart.AppVersion) }}
{{- end }}

{{/* imagePullSecrets plus global.imagePullSecrets (names or {name: ...}), as a YAML list; empty when none. */}}
{{- define "cne.imagePullSecrets" -}}
{{- $secrets := list }}
{{- range .Values.imagePullSecrets }}
{{- $secrets = append $secrets (dict "name" .name) }}
{{- end }}
{{- range ((.Values.global | default dict).imagePullSecrets | default list) }}
{{- if kindIs "string" . }}
{{- $secrets = append $secrets (dict "name" .) }}
{{- else }}
{{- $secrets = append $secrets (dict "name" .name) }}
{{- end }}
{{- end }}
{{- if $secrets }}
{{- toYaml (uniq $secrets) }}
{{- end }}
{{- end }}

{{/* How the endpoint is protected: "proxy" (kube-rbac-proxy), "existing" (a web configuration Secret of the
     user's), "chart" (the chart's web configuration: web.tls and/or web.basicAuth.users) or "" (open). */}}
{{- define "cne.webMode" -}}
{{- if .Values.kubeRBACProxy.enabled }}proxy
{{- else if .Values.web.existingSecret }}existing
{{- else if or .Values.web.tls.secretName .Values.web.basicAuth.users }}chart
{{- end }}
{{- end }}

{{/* The chart's web configuration Secret's name, and the upstream TLS Secret's (kube-rbac-proxy). */}}
{{- define "cne.webConfigSecret" -}}
{{- printf "%s-web-config" (include "cne.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "cne.upstreamTLSSecret" -}}
{{- .Values.kubeRBACProxy.upstreamTLS.secretName | default (printf "%s-upstream-tls" (include "cne.fullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}

{{/* The host sockets the sources connect to, comma-separated: hubble.sock for a unix:// Hubble address
     (Cilium's hubble-socket-path, default /var/run/cilium/hubble.sock: pkg/defaults HubbleSockPath in 1.14-1.16,
     the chart's hubble.socketPath from 1.17) and cilium.sock in hostSocketDir (pkg/defaults SockPath, 1.14-1.19)
     when the settings source reads the agent API. */}}
{{- define "cne.hostSockets" -}}
{{- $sources := splitList "," (include "cne.effectiveSources" .) }}
{{- $sockets := list }}
{{- if eq (include "cne.hubbleHostSocket" .) "true" }}
{{- $sockets = append $sockets (trimPrefix "unix://" (include "cne.hubbleAddress" .)) }}
{{- end }}
{{- if eq (include "cne.agentApiSocket" .) "true" }}
{{- $sockets = append $sockets (printf "%s/cilium.sock" (trimSuffix "/" .Values.hubble.hostSocketDir)) }}
{{- end }}
{{- join "," $sockets }}
{{- end }}

{{/* "true" when the settings source reads the agent API on cilium.sock, mounted beside hubble.sock. With Hubble
     over TCP nothing of the host is mounted: the settings then come from the ConfigMap (no socket file). */}}
{{- define "cne.agentApiSocket" -}}
{{- if and (eq (include "cne.hubbleHostSocket" .) "true") (has "settings" (splitList "," (include "cne.effectiveSources" .))) (or (not .Values.settings.from) (has "agent-api" .Values.settings.from)) }}true{{ end }}
{{- end }}

{{/* The --sources argument: .Values.sources, plus "agent" (required) when agentMetrics.enabled. */}}
{{- define "cne.sources" -}}
{{- $sources := .Values.sources }}
{{- if .Values.agentMetrics.enabled }}
{{- $sources = append $sources "agent" }}
{{- end }}
{{- $sources | uniq | join "," }}
{{- end }}

{{/* The sources that may run, for RBAC and mounts: "auto" stands for all five (--sources=auto). */}}
{{- define "cne.effectiveSources" -}}
{{- $sources := splitList "," (include "cne.sources" .) }}
{{- if has "auto" $sources }}
{{- $sources = concat (without $sources "auto") (list "hubble" "kubelet" "apiserver" "agent" "settings") }}
{{- end }}
{{- $sources | uniq | join "," }}
{{- end }}

{{/* "true" when the settings source may read Cilium's ConfigMap (--settings-from includes configmap). */}}
{{- define "cne.settingsConfigMap" -}}
{{- if and (has "settings" (splitList "," (include "cne.effectiveSources" .))) (or (not .Values.settings.from) (has "configmap" .Values.settings.from)) }}true{{ end }}
{{- end }}

{{/* "true" when the Hubble socket is a unix socket from the host (mounted from hubble.hostSocketDir). */}}
{{- define "cne.hubbleHostSocket" -}}
{{- if and (has "hubble" (splitList "," (include "cne.effectiveSources" .))) (hasPrefix "unix://" (include "cne.hubbleAddress" .)) }}true{{ end }}
{{- end }}

{{/* Relabelings shared by the ServiceMonitor and the PodMonitor: node, job, optional cluster, then the user's. */}}
{{- define "cne.relabelings" -}}
{{- $root := index . 0 }}
{{- $monitor := index . 1 -}}
- action: replace
  sourceLabels:
    - __meta_kubernetes_pod_node_name
  targetLabel: node
- action: replace
  replacement: {{ $root.Values.jobLabel | quote }}
  targetLabel: job
{{- if $root.Values.clusterLabel.value }}
- action: replace
  replacement: {{ $root.Values.clusterLabel.value | quote }}
  targetLabel: {{ $root.Values.clusterLabel.name }}
{{- end }}
{{- with $monitor.relabelings }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Values that set exporter flags, with the exporter's default (from _flags.tpl) when unset. */}}
{{- define "cne.ciliumNamespace" -}}
{{- .Values.cilium.namespace | default (include "cne.flagDefault.cilium-namespace" .) -}}
{{- end }}
{{- define "cne.hubbleAddress" -}}
{{- .Values.hubble.address | default (include "cne.flagDefault.hubble-address" .) -}}
{{- end }}
{{- define "cne.envoyNamespace" -}}
{{- .Values.envoy.namespace | default (include "cne.ciliumNamespace" .) -}}
{{- end }}
{{- define "cne.settingsConfigMapName" -}}
{{- .Values.settings.configMapName | default (include "cne.flagDefault.settings-configmap" .) -}}
{{- end }}


{{/* "true" when the pod needs its service-account token: the kubelet or API server source, the settings source
     reading the cilium-config ConfigMap, or kube-rbac-proxy
     (TokenReview, SubjectAccessReview); serviceAccount.automountServiceAccountToken overrides. */}}
{{- define "cne.automountToken" -}}
{{- $sources := splitList "," (include "cne.effectiveSources" .) }}
{{- $set := .Values.serviceAccount.automountServiceAccountToken }}
{{- if kindIs "invalid" $set -}}
{{- or (has "kubelet" $sources) (has "apiserver" $sources) (eq (include "cne.settingsConfigMap" .) "true") .Values.kubeRBACProxy.enabled -}}
{{- else -}}
{{- $set -}}
{{- end -}}
{{- end }}
